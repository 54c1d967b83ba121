"""Typing-aware coalescing (issue 15), end to end: devserver, Dify stand-in, the real bot, people.

People's clients send typing notifications to the bot as real clients do: "typing" on the first
keystroke, the IM on Enter, "none" once the box is empty. Times are compared on the monotonic clock
that the Dify stand-in stamps each request with (it runs in this process).
"""

from __future__ import annotations

import time
from pathlib import Path

from aimbot.oscar.events import TypingState
from tests.helpers.e2e import rig

WINDOW = 5.0  # far above the typing grace, so that "no window delay" cannot pass by chance


async def test_a_typing_users_lines_make_one_query_however_long_they_type(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.start_bot(BUFFER_WINDOW="0.3", BUFFER_MAX_WAIT="20")
        alice = await r.person("alice")
        carol = await r.person("carol")  # never sends typing: a witness that the window passed
        await alice.send_typing(TypingState.TYPING)
        await alice.say("one")
        await alice.send_typing(TypingState.TYPING)  # the next line
        await alice.wait_typing(TypingState.TYPING)  # the bot's: it holds Alice's first line
        await carol.say("hi")
        # Carol's IM went in after Alice's first line, and is answered only once her window is
        # over: Alice's first line would have gone alone by now if typing did not hold it.
        assert "you said 'hi'" in (await carol.reply()).text
        assert [q.query for q in r.dify.chat_requests] == ["hi"]
        await alice.say("two")
        await alice.send_typing(TypingState.NONE)
        reply = await alice.reply()
        assert "you said 'one\\ntwo'" in reply.text
        await r.quiescent()
        assert [q.query for q in r.dify.chat_requests] == ["hi", "one\ntwo"]
        assert alice.received.empty()


async def test_a_lone_im_from_a_typing_user_skips_the_window(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.start_bot(BUFFER_WINDOW=str(WINDOW), BUFFER_MAX_WAIT="10")
        alice = await r.person("alice")
        await alice.send_typing(TypingState.TYPING)
        sent_at = time.monotonic()
        await alice.say("just this")
        await alice.send_typing(TypingState.NONE)
        assert "you said 'just this'" in (await alice.reply()).text
        [request] = r.dify.chat_requests
        assert request.time - sent_at < WINDOW


async def test_text_deleted_after_an_im_releases_it_without_the_window(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.start_bot(BUFFER_WINDOW=str(WINDOW), BUFFER_MAX_WAIT="10")
        alice = await r.person("alice")
        sent_at = time.monotonic()
        await alice.say("first")
        await alice.send_typing(TypingState.TYPING)  # starts a second line ...
        await alice.send_typing(TypingState.NONE)  # ... and deletes it
        assert "you said 'first'" in (await alice.reply()).text
        [request] = r.dify.chat_requests
        assert request.time - sent_at < WINDOW


async def test_users_who_never_send_typing_and_window_mode_keep_the_window(
    tmp_path: Path,
) -> None:
    window = 1.0
    async with rig(tmp_path) as r:
        await r.start_bot(BUFFER_MODE="window", BUFFER_WINDOW=str(window), BUFFER_MAX_WAIT="10")
        alice = await r.person("alice")  # sends typing, but the bot is told to ignore it
        await alice.send_typing(TypingState.TYPING)
        sent_at = time.monotonic()
        await alice.say("hello")
        await alice.send_typing(TypingState.NONE)
        await alice.reply()
        await r.stop_bot()
        await r.start_bot(BUFFER_WINDOW=str(window), BUFFER_MAX_WAIT="10")  # typing mode
        bob = await r.person("bob")  # never sends typing
        bob_sent_at = time.monotonic()
        await bob.say("hello")
        await bob.reply()
        first, second = r.dify.chat_requests
        assert first.time - sent_at >= window
        assert second.time - bob_sent_at >= window
