"""Settings → the options of each part, in one place, so the bot and the doctor agree.

Each part takes its own small options object (it must not know about environment variables);
this module is the only one that maps Settings onto them.
"""

from __future__ import annotations

from aimbot.api.dify_client import DifyOptions
from aimbot.bot.aim_handler import HandlerOptions
from aimbot.bot.bot import BotOptions
from aimbot.config.settings import Settings
from aimbot.oscar.client import OscarClient
from aimbot.oscar.imtext import plain_to_html


def oscar_client(settings: Settings) -> OscarClient:
    """A fresh, not yet connected session for the bot's screen name."""
    return OscarClient(
        settings.aim_username,
        settings.aim_password.get(),
        settings.aim_server,
        settings.aim_port,
        keepalive_interval=settings.aim_keepalive_interval,
        read_timeout=settings.aim_read_timeout,
        connect_timeout=settings.aim_connect_timeout,
        throttle="auto" if settings.aim_throttle == "auto" else settings.aim_throttle == "true",
        profile=plain_to_html(settings.aim_profile) if settings.aim_profile else None,
    )


def dify_options(settings: Settings) -> DifyOptions:
    return DifyOptions(
        base_url=settings.dify_api_url,
        response_mode=settings.dify_response_mode,
        inputs=settings.dify_inputs,
        connect_timeout=settings.dify_connect_timeout,
        read_timeout=settings.dify_read_timeout,
        stream_deadline=settings.dify_stream_deadline,
        retry_base=settings.dify_retry_base,
        retry_cap=settings.dify_retry_cap,
        retry_max_attempts=settings.dify_retry_max_attempts,
        retry_max_time=settings.dify_retry_max_time,
        breaker_threshold=settings.dify_breaker_threshold,
        breaker_cooldown=settings.dify_breaker_cooldown,
        max_answer_chars=settings.max_answer_chars,
    )


def handler_options(settings: Settings) -> HandlerOptions:
    return HandlerOptions(
        screen_name=settings.aim_username,
        reconnect_base=settings.aim_reconnect_base,
        reconnect_cap=settings.aim_reconnect_cap,
        outbox_ttl=settings.outbox_ttl,
        busy_notice_after=settings.busy_notice_after,
    )


def bot_options(settings: Settings) -> BotOptions:
    return BotOptions(
        screen_name=settings.aim_username,
        buffer_window=settings.buffer_window,
        buffer_max_wait=settings.buffer_max_wait,
        buffer_mode=settings.buffer_mode,
        reply_format=settings.reply_format,
        max_reply_bytes=settings.max_reply_bytes,
        allowed_users=settings.allowed_users,
        blocked_users=settings.blocked_users,
        ignored_senders=settings.ignored_senders,
        user_rate_limit=settings.user_rate_limit,
        max_input_chars=settings.max_input_chars,
        typing_notifications=settings.typing_notifications,
        dify_user_prefix=settings.dify_user_prefix,
        dify_max_concurrency=settings.dify_max_concurrency,
        delete_on_clear=settings.dify_delete_on_clear,
        inbox_max_age=settings.inbox_max_age,
        restart_notice_window=settings.restart_notice_window,
        log_message_text=settings.log_message_text,
        max_answer_chars=settings.max_answer_chars,
        max_reply_parts=settings.max_reply_parts,
        stream_parts=settings.stream_parts,
    )
