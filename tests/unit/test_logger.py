"""Logging: secrets redacted from every part of every record; colour only on a terminal."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict, Unpack
from urllib.parse import quote_plus

import pytest

from aimbot.utils.logger import (
    REDACTED,
    LoggingSetupError,
    add_secret,
    redact,
    setup_logging,
)
from tests.helpers.ops import read_terminal, root_logging_restored, terminal

# Distinctive values no test prints for any other reason.
PASSWORD = "Pa$$-w0rd'with\"quotes"
API_KEY = "app-9f8e7d6c5b4a-test-key"
ESC = "\x1b["

log = logging.getLogger("aimbot.tests.logger")


@pytest.fixture(autouse=True)
def isolated_logging() -> Iterator[None]:
    with root_logging_restored():
        yield


class LoggingArgs(TypedDict, total=False):
    level: str
    log_file: Path | None
    log_format: str
    max_bytes: int
    backup_count: int


def setup(stream: io.StringIO | None = None, **kwargs: Unpack[LoggingArgs]) -> io.StringIO:
    stream = stream or io.StringIO()
    setup_logging(secrets=[PASSWORD, API_KEY], stream=stream, **kwargs)
    return stream


def assert_clean(text: str) -> None:
    assert PASSWORD not in text
    assert API_KEY not in text
    assert API_KEY[:12] not in text  # not even a recognisable part of it
    assert repr(PASSWORD)[1:-1] not in text


def test_message_and_arguments_are_redacted() -> None:
    out = setup()
    log.info("signing on with %s and key %r", PASSWORD, API_KEY)
    log.warning("header was Authorization: Bearer " + API_KEY)
    text = out.getvalue()
    assert_clean(text)
    assert text.count(REDACTED) == 3
    assert "signing on with [redacted] and key '[redacted]'" in text


def test_exception_text_and_traceback_are_redacted() -> None:
    out = setup()

    def fail(password: str) -> None:
        raise ValueError(f"login refused for password {password}")

    try:
        fail(PASSWORD)
    except ValueError:
        log.exception("sign-on failed (key %s)", API_KEY)
    text = out.getvalue()
    assert_clean(text)
    assert "Traceback (most recent call last)" in text
    assert "ValueError: login refused for password [redacted]" in text


def test_exception_seen_first_by_another_handler_is_still_redacted() -> None:
    """A handler that formats first caches the raw traceback in exc_text; ours must scrub it."""
    out = setup()
    earlier = logging.StreamHandler(io.StringIO())
    logging.getLogger().handlers.insert(0, earlier)  # removed again by isolated_logging
    try:
        raise RuntimeError(f"boom {PASSWORD}")
    except RuntimeError:
        log.error("failed", exc_info=True)
    assert PASSWORD in earlier.stream.getvalue()  # it really saw the raw record first
    assert_clean(out.getvalue())
    assert "RuntimeError: boom [redacted]" in out.getvalue()


def test_stack_info_is_redacted() -> None:
    out = setup()
    record = log.makeRecord(
        log.name, logging.INFO, __file__, 1, "with stack", (), None, sinfo=f"Stack: {API_KEY}"
    )
    log.handle(record)
    text = out.getvalue()
    assert_clean(text)
    assert f"Stack: {REDACTED}" in text


def test_third_party_loggers_are_redacted_too() -> None:
    out = setup()
    logging.getLogger("aiohttp.client").warning(
        "POST failed: headers={'Authorization': %r}", API_KEY
    )
    assert_clean(out.getvalue())
    assert "aiohttp.client" in out.getvalue()


def test_encoded_spellings_are_redacted() -> None:
    out = setup()
    log.info("in a repr: %r", PASSWORD)
    log.info("in JSON: %s", json.dumps({"password": PASSWORD}))
    log.info("in a URL: https://x/?p=%s", quote_plus(PASSWORD))
    assert_clean(out.getvalue())
    assert quote_plus(PASSWORD) not in out.getvalue()
    assert out.getvalue().count(REDACTED) == 3


def test_secrets_added_later_are_redacted_from_then_on() -> None:
    out = setup()
    late = "late-registered-token-4711"
    log.info("before: %s", late)
    add_secret(late)
    log.info("after: %s", late)
    lines = out.getvalue().splitlines()
    assert late in lines[0]
    assert late not in lines[1] and REDACTED in lines[1]
    assert redact(f"x{late}y") == f"x{REDACTED}y"


def test_empty_and_very_short_values_are_not_treated_as_secrets() -> None:
    out = setup()
    add_secret("")
    add_secret("ab")
    log.info("a b ab abc")
    assert "a b ab abc" in out.getvalue()


def test_a_broken_log_call_keeps_its_text_and_stays_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger().handlers.clear()  # pytest's capture handler would raise on this record
    out = setup()
    log.info("two placeholders %s %s but one argument", PASSWORD)
    text = out.getvalue()
    assert "two placeholders %s %s but one argument" in text
    assert "log call failed to format: TypeError" in text
    assert_clean(text)
    assert_clean(capsys.readouterr().err)


def test_json_lines_have_the_documented_fields() -> None:
    out = setup(log_format="json")
    log.info("hello %s", "world")
    try:
        raise KeyError(API_KEY)
    except KeyError:
        log.exception("lookup failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert set(first) == {"ts", "level", "logger", "message"}
    assert first["level"] == "INFO"
    assert first["logger"] == "aimbot.tests.logger"
    assert first["message"] == "hello world"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert set(second) == {"ts", "level", "logger", "message", "exc"}
    assert second["level"] == "ERROR"
    assert "KeyError" in second["exc"] and "Traceback" in second["exc"]
    assert_clean(out.getvalue())


def test_log_file_rotates_and_holds_plain_text(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "aimbot.log"  # the directory is created
    with terminal() as (tty, controller):
        setup_logging(
            log_file=log_file,
            max_bytes=2048,
            backup_count=2,
            stream=tty,
            secrets=[PASSWORD],
        )
        for number in range(200):
            log.warning("line %03d with %s", number, PASSWORD)
        read_terminal(controller)
    files = sorted(path.name for path in log_file.parent.iterdir())
    assert files == ["aimbot.log", "aimbot.log.1", "aimbot.log.2"]
    newest = log_file.read_text(encoding="utf-8")
    assert "line 199 with [redacted]" in newest
    assert all(path.stat().st_size <= 2048 for path in log_file.parent.iterdir())
    for path in log_file.parent.iterdir():
        content = path.read_text(encoding="utf-8")
        assert ESC not in content  # the terminal got colour, the file did not
        assert_clean(content)


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    with terminal() as (tty, controller):
        setup_logging(stream=tty)
        log.error("on a terminal")
        shown = read_terminal(controller)
    assert "on a terminal" in shown and ESC in shown

    out = setup()
    log.error("into a pipe")
    assert "into a pipe" in out.getvalue() and ESC not in out.getvalue()


def test_no_color_turns_colour_off_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    with terminal() as (tty, controller):
        setup_logging(stream=tty)
        log.error("plain please")
        shown = read_terminal(controller)
    assert "plain please" in shown and ESC not in shown


def test_colour_does_not_leak_into_other_handlers_through_the_shared_record() -> None:
    other_stream = io.StringIO()
    other = logging.StreamHandler(other_stream)
    other.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    with terminal() as (tty, controller):
        setup_logging(stream=tty)
        logging.getLogger().addHandler(other)
        log.warning("shared record")
        read_terminal(controller)
    assert other_stream.getvalue() == "WARNING shared record\n"


def test_setup_is_idempotent_and_respects_the_level() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = setup()
    second = setup(level="warning")
    assert len(root.handlers) == before + 1
    log.info("quiet")
    log.warning("loud")
    assert first.getvalue() == ""
    assert "quiet" not in second.getvalue() and "loud" in second.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "LOUD"}, "unknown log level 'LOUD'"),
        ({"log_format": "xml"}, "unknown log format 'xml'"),
        ({"max_bytes": -1}, "must not be negative"),
    ],
)
def test_bad_arguments_are_rejected_and_keep_the_previous_setup(
    kwargs: LoggingArgs, message: str
) -> None:
    out = setup()
    with pytest.raises(ValueError, match=message):
        setup(**kwargs)
    log.warning("still here")
    assert "still here" in out.getvalue()


def test_unopenable_log_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    out = setup()
    with pytest.raises(LoggingSetupError, match=r"cannot open log file .*not-a-directory"):
        setup(log_file=blocker / "aimbot.log")
    log.warning("still logging")
    assert "still logging" in out.getvalue()


def test_warnings_pass_through_logging_and_are_redacted() -> None:
    out = setup()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated option used with {API_KEY}", UserWarning, stacklevel=1)
    assert "deprecated option used with [redacted]" in out.getvalue()
    assert_clean(out.getvalue())


def test_no_part_keeps_a_secret_in_a_printable_attribute() -> None:
    import aiohttp

    from aimbot.api.dify_client import DifyClient
    from aimbot.oscar.client import OscarClient

    client = OscarClient("bot", "hunter2-password", "127.0.0.1", 5190)
    dumped = repr(client) + repr(vars(client) if hasattr(client, "__dict__") else "")
    assert "hunter2-password" not in dumped

    async def dify_dump() -> str:
        async with aiohttp.ClientSession() as session:
            dify = DifyClient(session, "app-topsecret-key")
            return repr(dify) + repr(vars(dify) if hasattr(dify, "__dict__") else "")

    import asyncio

    assert "app-topsecret-key" not in asyncio.run(dify_dump())


# --- issue 13 item 9: user data cannot forge log lines --------------------------------------------


FORGED = "evil\n2026-01-01 00:00:00 ERROR    aimbot.app: forged line\r\x1b[31mred\u2028more"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_control_characters_in_arguments_are_escaped_not_written(log_format: str) -> None:
    out = setup(log_format=log_format)
    log.warning("IM from %s (%r) said %s", FORGED, FORGED, ValueError(FORGED))
    log.info("user %(name)s wrote", {"name": FORGED})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one line per record, whatever the screen name holds
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
    if log_format == "text":
        assert "IM from evil\\n2026-01-01 00:00:00 ERROR" in lines[0]
        assert "\\x1b[31mred\\u2028more" in lines[0]
        assert "user evil\\n2026" in lines[1]


def test_our_own_line_breaks_numbers_and_secrets_are_untouched() -> None:
    out = setup()
    log.warning("two\nlines: %d IMs, %.1f s, %s", 3, 2.5, "tab\there")
    log.warning("key %s", "x\t" + API_KEY)
    text = out.getvalue()
    assert "two\nlines: 3 IMs, 2.5 s, tab\\there" in text
    assert_clean(text)


def test_a_non_string_message_is_escaped_too() -> None:
    out = setup()
    log.warning(ValueError("line\nforged"))
    assert out.getvalue().count("\n") == 1 and "line\\nforged" in out.getvalue()
