"""Logging for a daemon that holds a password and an API key.

Redaction happens in a filter on every handler we install, not in our own log calls, because
secrets leak through places nobody writes on purpose: an aiohttp exception that quotes a header,
a traceback that shows a local variable, a third-party library's debug line. The filter renders
the message, the traceback and the stack once, scrubs them, and hands the formatters text only.

Colour is for people watching a terminal; files, pipes and `docker logs` get plain text (or JSON
lines for log shippers), because escape codes in a file are noise.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.handlers
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import quote, quote_plus

import colorama

logger = logging.getLogger(__name__)

REDACTED: Final = "[redacted]"
MIN_SECRET_LENGTH: Final = 4
"""Shorter values are not redacted: scrubbing every "abc" would make logs unreadable."""

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

_LEVEL_COLOURS: Final = {
    "DEBUG": colorama.Style.DIM,
    "INFO": colorama.Fore.GREEN,
    "WARNING": colorama.Fore.YELLOW,
    "ERROR": colorama.Fore.RED,
    "CRITICAL": colorama.Fore.RED + colorama.Style.BRIGHT,
}


class LoggingSetupError(Exception):
    """The log file cannot be opened; the CLI reports it like a configuration problem."""


def _spellings(secret: str) -> set[str]:
    """The ways a secret shows up in text: as is, inside a repr, in JSON, URL-encoded, and
    with its control characters escaped."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        escape_controls(secret),  # as a log argument shows it
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class _Redactor:
    """Every secret seen so far, as one compiled pattern (swapped atomically when one is added)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spellings: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            new = _spellings(secret) - self._spellings
            if not new:
                return
            self._spellings |= new
            # Longest first, so that a secret containing another one is scrubbed whole.
            ordered = sorted(self._spellings, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)


_redactor = _Redactor()
_setup_lock = threading.Lock()
_our_handlers: list[logging.Handler] = []
_plain_formatter = logging.Formatter()


def add_secret(value: str) -> None:
    """Redact this value from every log record from now on (empty and very short values ignored)."""
    _redactor.add(value)


def redact(text: str) -> str:
    """The text with every registered secret replaced; for messages that bypass logging."""
    return _redactor.redact(text)


# Characters that end a line or drive a terminal: C0 and C1 controls, DEL, and the Unicode line
# and paragraph separators. In logged user data (a screen name, an IM, a server's text) they
# would let a peer forge log lines or recolour a terminal.
_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_CONTROLS: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_CONTROLS.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """The text with every control character written as a visible escape (\\n, \\x1b, …)."""
    return _CONTROLS.sub(_escape_control, text)


class _Escaped:
    """A log argument whose str() and repr() have their control characters escaped."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __str__(self) -> str:
        return escape_controls(str(self._value))

    def __repr__(self) -> str:
        return escape_controls(repr(self._value))


def _escaped_arg(value: object) -> object:
    # Numbers stay numbers (for %d, %.2f); everything else may carry a peer's text.
    if value is None or isinstance(value, int | float):
        return value
    return _Escaped(value)


def _escape_args(record: logging.LogRecord) -> None:
    """Escape control characters in the %-arguments: our format strings may hold line breaks,
    the data filled into them may not (a screen name with a newline must not forge a line)."""
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(_escaped_arg(arg) for arg in args)
    elif isinstance(args, Mapping):
        record.args = {key: _escaped_arg(value) for key, value in args.items()}
    if not isinstance(record.msg, str):  # log.info(obj): the object's text is data too
        record.msg = _Escaped(record.msg)


def _render_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as e:  # a bad format string must not lose the record (or crash the caller)
        try:
            arguments = repr(record.args)
        except Exception:
            arguments = "<unprintable>"
        return f"{record.msg!s} [log call failed to format: {type(e).__name__}; args={arguments}]"


class RedactingFilter(logging.Filter):
    """Scrubs secrets from the message, its arguments, the traceback and the stack of a record,
    and escapes control characters in the arguments (see _escape_args).

    The record is rewritten in place (message rendered, args dropped, traceback turned into
    text) so that no later handler or formatter can render the raw values again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _escape_args(record)
        record.msg = _redactor.redact(_render_message(record))
        record.args = None
        if hasattr(record, "message"):  # cached by a formatter that saw the record first
            record.message = record.msg
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _plain_formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = _redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = _redactor.redact(record.stack_info)
        return True


class ColourFormatter(logging.Formatter):
    """Colours the level name of a copy of the record; the shared record stays plain for files."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        coloured = copy.copy(record)
        colour = _LEVEL_COLOURS.get(record.levelname, "")
        coloured.levelname = f"{colour}{record.levelname:<8}{colorama.Style.RESET_ALL}"
        return super().format(coloured)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (ts, level, logger, message, exc), for log shippers.

    A record logged with ``extra={"fields": {...}}`` (the traffic log) also carries those
    figures as keys of their own, so a shipper need not parse the message; they never replace
    the standard keys, and text values are redacted like the message.
    """

    def format(self, record: logging.LogRecord) -> str:
        timestamp = datetime.fromtimestamp(record.created, UTC)
        payload: dict[str, object] = {
            "ts": timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        exc = record.exc_text
        if not exc and record.exc_info:
            exc = self.formatException(record.exc_info)
        if exc:
            payload["exc"] = exc
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if isinstance(key, str) and key not in payload:
                    payload[key] = _redactor.redact(value) if isinstance(value, str) else value
        return json.dumps(payload, ensure_ascii=False, default=str)


def _is_terminal(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):  # https://no-color.org: the user asked for none
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


def _formatter_for(log_format: str, *, colour: bool) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if colour:
        colorama.just_fix_windows_console()
        return ColourFormatter()
    return logging.Formatter(TEXT_FORMAT, DATE_FORMAT)


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files are 0600: they quote users' screen names and what the bot did for them.

    Each file it opens (the first and every one after a rotation) is created 0600, and an
    existing one is made 0600, whatever the process umask.
    """

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            return open(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def _open_log_file(path: Path, max_bytes: int, backup_count: int) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _PrivateRotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
    except OSError as e:
        raise LoggingSetupError(f"cannot open log file {path}: {e.strerror or e}") from e


def setup_logging(
    *,
    level: str = "INFO",
    log_file: Path | None = None,
    log_format: str = "text",
    secrets: Iterable[str] = (),
    max_bytes: int = 10_485_760,
    backup_count: int = 5,
    stream: TextIO | None = None,
) -> None:
    """Install our handlers on the root logger, replacing the ones a previous call installed.

    Secrets accumulate across calls: a value once registered is never logged again.
    Raises ValueError for a bad level or format and LoggingSetupError when the file cannot be
    opened; in both cases the previous set-up stays in place.
    """
    level_name = level.strip().upper()
    if level_name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; expected one of {', '.join(FORMATS)}")
    if max_bytes < 0 or backup_count < 0:
        raise ValueError("log rotation sizes must not be negative")
    for secret in secrets:
        add_secret(secret)

    console_stream = sys.stderr if stream is None else stream
    console = logging.StreamHandler(console_stream)
    console.setFormatter(_formatter_for(log_format, colour=_is_terminal(console_stream)))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        file_handler = _open_log_file(log_file, max_bytes, backup_count)
        file_handler.setFormatter(_formatter_for(log_format, colour=False))
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(RedactingFilter())

    root = logging.getLogger()
    with _setup_lock:
        for old in _our_handlers:
            root.removeHandler(old)
            old.close()
        _our_handlers[:] = handlers
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level_name)
    logging.captureWarnings(True)  # warnings.warn() text passes the redaction filter too
    logger.debug("logging at %s, file: %s, format: %s", level_name, log_file or "none", log_format)
