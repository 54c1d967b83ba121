"""Settings from the environment and `.env`, validated before anything connects.

An operator who gets one error at a time fixes a config in ten restarts; so every problem is
collected and reported at once, each naming the variable, what was given and what is allowed.
Secrets are wrapped in `Secret` from the moment they are read, so that no repr, log line or
error message can print them by accident.

Every variable is documented, with its default and range, in `.env.example` (a test keeps the
two in sync). The attribute name of each setting is its environment name in lower case.
"""

from __future__ import annotations

import difflib
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from aimbot.oscar.snacs import normalize_screen_name
from aimbot.utils.eventloop import uvloop_available
from aimbot.utils.secret import MASK as MASK
from aimbot.utils.secret import Secret as Secret
from aimbot.utils.secret import mask_url_credentials, url_has_credentials

logger = logging.getLogger(__name__)

"""What a secret prints as, everywhere."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
ResponseMode = Literal["streaming", "blocking"]
ReplyFormat = Literal["html", "plain"]
EventLoop = Literal["auto", "asyncio", "uvloop"]
BufferMode = Literal["typing", "window"]
ThrottleMode = Literal["auto", "true", "false"]

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0
_DAY: Final = 86400.0
_MIB: Final = 1024 * 1024

# The values .env.example ships with for the required settings: a copied-but-unedited file must
# fail loudly instead of trying to sign on as "YourBotName".
PLACEHOLDERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "AIM_USERNAME": "YourBotName",
        "AIM_PASSWORD": "change-me",
        "DIFY_API_KEY": "app-change-me",
    }
)

_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
DEFAULT_AIM_PROFILE: Final = "I am an AI assistant bot. Send me a message; type help for commands."
MAX_AIM_PROFILE_BYTES: Final = 1024
# Normalised screen names: AIM names (letters, digits), ICQ numbers, and the e-mail style names
# some servers allow. Normalising = lower case with spaces removed (docs/oscar-protocol.md §11).
_NORMALISED_SCREEN_NAME: Final = re.compile(r"[a-z0-9][a-z0-9@._+-]{0,96}")


class ConfigError(Exception):
    """Every problem with the configuration, so one restart shows them all.

    The CLI prints str(error) and exits with `exit_code`, without a traceback.
    """

    exit_code: Final = 2

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems) or ["invalid configuration (no details)"]
        super().__init__(self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"invalid configuration ({count} {noun}):"]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append("Every setting, with its default and allowed range, is in .env.example.")
        return "\n".join(lines)


class _Unparsable(ValueError):
    """Raised by a kind's parse(); the message is what was wrong beyond "not allowed"."""


class _Kind:
    """How one setting is read from text, checked and printed back (in .env syntax)."""

    allowed: str = ""
    secret: bool = False
    empty_is_value: bool = False
    """Whether an empty string is a real value rather than "not set, use the default"."""

    def parse(self, raw: str) -> Any:
        raise NotImplementedError

    def valid(self, value: Any) -> bool:
        raise NotImplementedError

    def show(self, value: Any) -> str:
        return str(value)

    def show_raw(self, raw: Any) -> str:
        """How a value that failed its checks is quoted in an error (never a secret's text)."""
        return MASK if self.secret else repr(_truncate(raw) if isinstance(raw, str) else raw)


def _show_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


class _Int(_Kind):
    def __init__(self, low: int, high: int, *, zero_means: str | None = None) -> None:
        self.low, self.high, self.zero_means = low, high, zero_means
        self.allowed = f"a whole number from {low} to {high}"
        if zero_means is not None:
            self.allowed = f"0 ({zero_means}) or {self.allowed}"

    def parse(self, raw: str) -> int:
        try:
            return int(raw.strip())
        except ValueError as e:
            raise _Unparsable("not a whole number") from e

    def valid(self, value: Any) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return self.low <= value <= self.high or (self.zero_means is not None and value == 0)


class _Float(_Kind):
    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open
        above = "more than" if low_open else "from"
        self.allowed = f"a number of seconds {above} {_show_number(low)} to {_show_number(high)}"

    def parse(self, raw: str) -> float:
        try:
            return float(raw.strip())
        except ValueError as e:
            raise _Unparsable("not a number") from e

    def valid(self, value: Any) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if not math.isfinite(value):
            return False
        above_low = value > self.low if self.low_open else value >= self.low
        return above_low and value <= self.high

    def show(self, value: Any) -> str:
        return _show_number(value)


class _Bool(_Kind):
    _WORDS: Final = {
        "true": True,
        "1": True,
        "yes": True,
        "on": True,
        "false": False,
        "0": False,
        "no": False,
        "off": False,
    }
    allowed = "true/false (also 1/0, yes/no, on/off)"

    def parse(self, raw: str) -> bool:
        try:
            return self._WORDS[raw.strip().lower()]
        except KeyError as e:
            raise _Unparsable("not a yes/no value") from e

    def valid(self, value: Any) -> bool:
        return isinstance(value, bool)

    def show(self, value: Any) -> str:
        return "true" if value else "false"


class _Throttle(_Kind):
    """auto, or any yes/no word (kept for configs written before auto existed)."""

    allowed = "auto, true or false (also 1/0, yes/no, on/off)"

    def parse(self, raw: str) -> str:
        if raw.strip().lower() == "auto":
            return "auto"
        return "true" if _Bool().parse(raw) else "false"

    def valid(self, value: Any) -> bool:
        return value in ("auto", "true", "false")


class _Choice(_Kind):
    def __init__(self, *options: str) -> None:
        self.options = options
        self.allowed = "one of " + ", ".join(options)

    def parse(self, raw: str) -> str:
        wanted = raw.strip().lower()
        for option in self.options:
            if option.lower() == wanted:
                return option
        raise _Unparsable("not one of the choices")

    def valid(self, value: Any) -> bool:
        return value in self.options


class _Text(_Kind):
    def __init__(self, *, max_length: int, allow_empty: bool = False) -> None:
        self.max_length, self.allow_empty = max_length, allow_empty
        self.empty_is_value = allow_empty
        least = 0 if allow_empty else 1
        self.allowed = f"text of {least} to {max_length} characters, no control characters"

    def parse(self, raw: str) -> str:
        return raw.strip()

    def valid(self, value: Any) -> bool:
        if not isinstance(value, str) or _CONTROL_CHARS.search(value):
            return False
        return (self.allow_empty or value != "") and len(value) <= self.max_length


class _Profile(_Text):
    """Plain text for the bot's AIM profile, bounded in encoded bytes (servers store bytes)."""

    def __init__(self, *, max_bytes: int) -> None:
        super().__init__(max_length=max_bytes, allow_empty=True)
        self.allowed = f"text of at most {max_bytes} bytes (UTF-8), no control characters"

    def valid(self, value: Any) -> bool:
        # Characters never outnumber bytes, so the inherited check is only the control-char one.
        if not super().valid(value):
            return False
        return len(value.encode("utf-8", errors="replace")) <= self.max_length


class _ScreenName(_Kind):
    allowed = "a screen name: letters, digits and spaces (or an ICQ number, or name@domain)"

    def parse(self, raw: str) -> str:
        return raw.strip()

    def valid(self, value: Any) -> bool:
        return isinstance(value, str) and _is_screen_name(normalize_screen_name(value))


class _SecretText(_Kind):
    allowed = "a non-empty secret without line breaks"
    secret = True

    def parse(self, raw: str) -> Secret:
        return Secret(raw)

    def valid(self, value: Any) -> bool:
        if not isinstance(value, Secret):
            return False
        text = value.get()
        return text != "" and "\n" not in text and "\r" not in text and "\x00" not in text

    def show(self, value: Any) -> str:
        return MASK


class _Url(_Kind):
    allowed = (
        "an http:// or https:// URL with a host and no user:password@, e.g. https://api.dify.ai/v1"
    )

    def parse(self, raw: str) -> str:
        if url_has_credentials(raw.strip()):
            # Dify is authenticated by DIFY_API_KEY in the Authorization header, which cannot
            # be combined with credentials in the URL; and they would be printed with it.
            raise _Unparsable("credentials in the URL cannot be used (the key is DIFY_API_KEY)")
        # A trailing slash would give "//chat-messages" once the client appends its paths.
        return raw.strip().rstrip("/")

    def valid(self, value: Any) -> bool:
        if not isinstance(value, str) or _CONTROL_CHARS.search(value) or " " in value:
            return False
        if url_has_credentials(value):
            return False
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port number
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname)

    def show(self, value: Any) -> str:
        return mask_url_credentials(str(value))

    def show_raw(self, raw: Any) -> str:
        return repr(_truncate(mask_url_credentials(raw))) if isinstance(raw, str) else repr(raw)


class _JsonObject(_Kind):
    allowed = 'a JSON object, e.g. {"language": "en"}'
    empty_is_value = True

    def parse(self, raw: str) -> Mapping[str, Any]:
        if raw.strip() == "":
            return MappingProxyType({})
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _Unparsable(f"not valid JSON ({e.msg} at character {e.pos})") from e
        if not isinstance(decoded, dict):
            raise _Unparsable(f"JSON {type(decoded).__name__}, not an object")
        return MappingProxyType(decoded)

    def valid(self, value: Any) -> bool:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            return False
        try:
            json.dumps(dict(value), allow_nan=False)
        except (TypeError, ValueError):
            return False
        return True

    def show(self, value: Any) -> str:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


class _ScreenNameSet(_Kind):
    allowed = "a comma-separated list of screen names (case and spaces are ignored)"
    empty_is_value = True

    def parse(self, raw: str) -> frozenset[str]:
        names = {normalize_screen_name(part) for part in raw.split(",")}
        names.discard("")
        bad = sorted(name for name in names if not _is_screen_name(name))
        if bad:
            raise _Unparsable("not screen names: " + ", ".join(repr(name) for name in bad))
        return frozenset(names)

    def valid(self, value: Any) -> bool:
        return isinstance(value, frozenset) and all(
            isinstance(name, str) and _is_screen_name(name) and normalize_screen_name(name) == name
            for name in value
        )

    def show(self, value: Any) -> str:
        return ",".join(sorted(value))


class _PathKind(_Kind):
    def __init__(self, *, optional: bool) -> None:
        self.optional = optional
        self.empty_is_value = optional
        self.allowed = "a file path, or empty for none" if optional else "a directory path"

    def parse(self, raw: str) -> Path | None:
        text = raw.strip()
        if text == "" and self.optional:
            return None
        return Path(text)

    def valid(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return isinstance(value, Path) and str(value) not in ("", ".") and "\x00" not in str(value)

    def show(self, value: Any) -> str:
        return "" if value is None else str(value)


def _is_screen_name(normalised: str) -> bool:
    return _NORMALISED_SCREEN_NAME.fullmatch(normalised) is not None


def _rule(kind: _Kind) -> dict[str, _Kind]:
    """Field metadata telling load_settings how to parse and check the setting."""
    return {"kind": kind}


def _no_inputs() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The validated configuration; constructing one directly validates it too."""

    # AIM
    aim_username: str = field(metadata=_rule(_ScreenName()))
    aim_password: Secret = field(metadata=_rule(_SecretText()))
    aim_server: str = field(default="127.0.0.1", metadata=_rule(_Text(max_length=253)))
    aim_port: int = field(default=5190, metadata=_rule(_Int(1, 65535)))
    aim_keepalive_interval: float = field(default=30.0, metadata=_rule(_Float(5, 300)))
    aim_read_timeout: float = field(default=15.0, metadata=_rule(_Float(1, 120)))
    aim_connect_timeout: float = field(default=10.0, metadata=_rule(_Float(1, 120)))
    aim_reconnect_base: float = field(default=1.0, metadata=_rule(_Float(0.1, 60)))
    aim_reconnect_cap: float = field(default=300.0, metadata=_rule(_Float(0.1, _HOUR)))
    aim_throttle: ThrottleMode = field(default="auto", metadata=_rule(_Throttle()))
    aim_profile: str = field(
        default=DEFAULT_AIM_PROFILE, metadata=_rule(_Profile(max_bytes=MAX_AIM_PROFILE_BYTES))
    )
    max_reply_bytes: int = field(
        default=0, metadata=_rule(_Int(64, 8000, zero_means="the server's limit"))
    )
    outbox_ttl: float = field(default=_DAY, metadata=_rule(_Float(_MINUTE, 30 * _DAY)))
    busy_notice_after: float = field(default=30.0, metadata=_rule(_Float(0, _HOUR)))
    # Dify
    dify_api_key: Secret = field(metadata=_rule(_SecretText()))
    dify_api_url: str = field(default="https://api.dify.ai/v1", metadata=_rule(_Url()))
    dify_response_mode: ResponseMode = field(
        default="streaming", metadata=_rule(_Choice("streaming", "blocking"))
    )
    dify_inputs: Mapping[str, Any] = field(
        default_factory=_no_inputs, metadata=_rule(_JsonObject())
    )
    dify_user_prefix: str = field(
        default="aim:", metadata=_rule(_Text(max_length=64, allow_empty=True))
    )
    dify_connect_timeout: float = field(default=10.0, metadata=_rule(_Float(1, 120)))
    dify_read_timeout: float = field(default=60.0, metadata=_rule(_Float(10, 600, low_open=True)))
    dify_stream_deadline: float = field(default=180.0, metadata=_rule(_Float(10, _HOUR)))
    dify_retry_base: float = field(default=1.0, metadata=_rule(_Float(0.1, 60)))
    dify_retry_cap: float = field(default=30.0, metadata=_rule(_Float(0.1, _HOUR)))
    dify_retry_max_attempts: int = field(default=5, metadata=_rule(_Int(1, 20)))
    dify_retry_max_time: float = field(default=120.0, metadata=_rule(_Float(1, _HOUR)))
    dify_breaker_threshold: int = field(default=5, metadata=_rule(_Int(1, 100)))
    dify_breaker_cooldown: float = field(default=30.0, metadata=_rule(_Float(1, _HOUR)))
    dify_max_concurrency: int = field(default=8, metadata=_rule(_Int(1, 256)))
    dify_delete_on_clear: bool = field(default=False, metadata=_rule(_Bool()))
    # Bot behaviour
    buffer_window: float = field(default=1.5, metadata=_rule(_Float(0, 30)))
    buffer_max_wait: float = field(default=6.0, metadata=_rule(_Float(0, 120)))
    buffer_mode: BufferMode = field(default="typing", metadata=_rule(_Choice("typing", "window")))
    reply_format: ReplyFormat = field(default="html", metadata=_rule(_Choice("html", "plain")))
    allowed_users: frozenset[str] = field(default=frozenset(), metadata=_rule(_ScreenNameSet()))
    blocked_users: frozenset[str] = field(default=frozenset(), metadata=_rule(_ScreenNameSet()))
    ignored_senders: frozenset[str] = field(default=frozenset(), metadata=_rule(_ScreenNameSet()))
    user_rate_limit: int = field(default=20, metadata=_rule(_Int(1, 10_000, zero_means="off")))
    max_input_chars: int = field(default=2000, metadata=_rule(_Int(1, 100_000)))
    typing_notifications: bool = field(default=True, metadata=_rule(_Bool()))
    restart_notice_window: float = field(default=120.0, metadata=_rule(_Float(0, _DAY)))
    max_answer_chars: int = field(default=8000, metadata=_rule(_Int(100, 1_000_000)))
    max_reply_parts: int = field(default=10, metadata=_rule(_Int(1, 100)))
    stream_parts: bool = field(default=True, metadata=_rule(_Bool()))
    # State
    data_dir: Path = field(default=Path("data"), metadata=_rule(_PathKind(optional=False)))
    inbox_max_age: float = field(default=_HOUR, metadata=_rule(_Float(0, 7 * _DAY)))
    # Ops
    log_level: LogLevel = field(
        default="INFO", metadata=_rule(_Choice("DEBUG", "INFO", "WARNING", "ERROR"))
    )
    log_file: Path | None = field(default=None, metadata=_rule(_PathKind(optional=True)))
    log_format: LogFormat = field(default="text", metadata=_rule(_Choice("text", "json")))
    log_max_bytes: int = field(default=10 * _MIB, metadata=_rule(_Int(1024, 1024 * _MIB)))
    log_backup_count: int = field(default=5, metadata=_rule(_Int(1, 100)))
    log_message_text: bool = field(default=False, metadata=_rule(_Bool()))
    health_host: str = field(default="127.0.0.1", metadata=_rule(_Text(max_length=253)))
    health_port: int = field(default=8080, metadata=_rule(_Int(1, 65535, zero_means="off")))
    health_connection_timeout: float = field(default=5.0, metadata=_rule(_Float(0.5, 60)))
    health_max_connections: int = field(default=64, metadata=_rule(_Int(1, 10_000)))
    shutdown_grace: float = field(default=10.0, metadata=_rule(_Float(0, 300)))
    event_loop: EventLoop = field(
        default="auto", metadata=_rule(_Choice("auto", "asyncio", "uvloop"))
    )

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        problems = [
            f"{_env_name(name)}: got {_show_safely(name, value)}; expected {_kind(name).allowed}"
            for name, value in values.items()
            if not _kind(name).valid(value)
        ]
        problems += _cross_problems(values)
        if problems:
            raise ConfigError(problems)

    def secrets(self) -> list[str]:
        """The raw secret values, so that the logger can redact them from every record."""
        return [
            value.get()
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), Secret) and value.get()
        ]

    def describe(self) -> list[tuple[str, str]]:
        """(ENV_NAME, value in .env syntax) for every setting, secrets masked; for `doctor`."""
        return [
            (_env_name(f.name), _kind(f.name).show(getattr(self, f.name))) for f in fields(self)
        ]


_FIELDS: Final = {f.name: f for f in fields(Settings)}
ENV_NAMES: Final[tuple[str, ...]] = tuple(name.upper() for name in _FIELDS)
"""Every environment variable Settings reads, in documentation order."""

# (lower setting, upper setting): the upper one may never be below the lower one.
_ORDERED_PAIRS: Final = (
    ("aim_reconnect_base", "aim_reconnect_cap"),
    ("dify_retry_base", "dify_retry_cap"),
    ("buffer_window", "buffer_max_wait"),
)


def _kind(name: str) -> _Kind:
    kind = _FIELDS[name].metadata["kind"]
    assert isinstance(kind, _Kind)
    return kind


def _env_name(name: str) -> str:
    return name.upper()


def _is_required(name: str) -> bool:
    f = _FIELDS[name]
    return f.default is MISSING and f.default_factory is MISSING


def _default(name: str) -> Any:
    f = _FIELDS[name]
    if f.default is not MISSING:
        return f.default
    factory = f.default_factory
    assert callable(factory), f"{name} has no default"
    return factory()


def _truncate(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_safely(name: str, value: Any) -> str:
    kind = _kind(name)
    if kind.secret:
        return MASK
    try:
        shown = kind.show(value) if kind.valid(value) else kind.show_raw(value)
    except Exception:  # a wrongly typed value must still produce a readable problem
        shown = f"<{type(value).__name__}>"
    return _truncate(shown)


def _cross_problems(values: Mapping[str, Any], given: Iterable[str] | None = None) -> list[str]:
    """Problems between settings; each is reported under the variable the operator set."""
    given = set(values if given is None else given)
    problems = []
    for low_name, high_name in _ORDERED_PAIRS:
        if low_name not in values or high_name not in values:
            continue
        low, high = values[low_name], values[high_name]
        if not (_kind(low_name).valid(low) and _kind(high_name).valid(high)):
            continue  # already reported on its own
        if high >= low:
            continue
        low_env, high_env = _env_name(low_name), _env_name(high_name)
        if high_name in given or low_name not in given:
            problems.append(
                f"{high_env}: got {_show_number(high)}, which is below {low_env} "
                f"({_show_number(low)}); expected at least {low_env}"
            )
        else:
            problems.append(
                f"{low_env}: got {_show_number(low)}, which is above {high_env} "
                f"({_show_number(high)}); expected at most {high_env}"
            )
    if values.get("event_loop") == "uvloop" and not uvloop_available():
        problems.append(
            "EVENT_LOOP: got uvloop, which is not installed here; expected auto or asyncio "
            "(or install requirements.txt)"
        )
    return problems


def _read_env_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """The NAME=value pairs of a .env file, plus any lines that could not be understood.

    Values are taken literally (no ${VAR} expansion), so a password containing "$" survives.
    """
    if not path.exists():
        return {}, []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return {}, [f"{path}: not UTF-8 text"]
    except OSError as e:
        return {}, [f"{path}: cannot read it ({e.strerror or e})"]
    problems = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            problems.append(f"{path} line {line}: cannot parse this line; expected NAME=value")
        elif binding.key in _UPPER_TO_FIELD and binding.value is None:
            problems.append(f"{path} line {line}: {binding.key} has no '=value'")
    raw = dotenv_values(stream=io.StringIO(text), interpolate=False)
    values = {key: value for key, value in raw.items() if value is not None}
    return values, problems


_UPPER_TO_FIELD: Final = {name.upper(): name for name in _FIELDS}


def _warn_about_unknown(names: Iterable[str], where: str) -> None:
    """A misspelt variable would otherwise be ignored without a word (and its default used)."""
    for name in sorted(names):
        close = difflib.get_close_matches(name, ENV_NAMES, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        logger.warning("ignoring unknown setting %s in %s%s", name, where, hint)


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = Path(".env"),
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Read, check and return the settings, or raise ConfigError listing every problem.

    Precedence: overrides, then the real environment, then the env file (which only fills names
    the environment lacks, the python-dotenv convention). Empty values mean "use the default",
    except where empty is meaningful (LOG_FILE, DIFY_USER_PREFIX, the user lists, DIFY_INPUTS).
    """
    environment = os.environ if environ is None else environ
    overrides = overrides or {}
    problems: list[str] = []

    file_values: dict[str, str] = {}
    if env_file is not None:
        file_values, file_problems = _read_env_file(env_file)
        problems += file_problems
        _warn_about_unknown(set(file_values) - set(ENV_NAMES), str(env_file))
    _warn_about_unknown(
        {n for n in environment if n.startswith(("AIM_", "DIFY_")) and n not in ENV_NAMES},
        "the environment",
    )
    problems += [f"{name}: unknown setting" for name in sorted(set(overrides) - set(ENV_NAMES))]

    values: dict[str, Any] = {}
    for name in _FIELDS:
        env_name = _env_name(name)
        kind = _kind(name)
        if env_name in overrides:
            raw, origin = overrides[env_name], ""
        elif env_name in environment:
            raw, origin = environment[env_name], ""
        elif env_name in file_values:
            raw, origin = file_values[env_name], f" (from {env_file})"
        else:
            raw, origin = None, ""
        if raw is None or (raw.strip() == "" and not kind.empty_is_value):
            if _is_required(name):
                problems.append(f"{env_name}: required but not set; expected {kind.allowed}")
            continue
        given = kind.show_raw(raw)
        if env_name in PLACEHOLDERS and raw.strip() == PLACEHOLDERS[env_name]:
            problems.append(
                f"{env_name}{origin}: still the example placeholder; set the real value"
            )
            continue
        try:
            value = kind.parse(raw)
        except _Unparsable as e:
            problems.append(f"{env_name}{origin}: got {given}, {e}; expected {kind.allowed}")
            continue
        if not kind.valid(value):
            problems.append(f"{env_name}{origin}: got {given}; expected {kind.allowed}")
            continue
        values[name] = value

    defaults = {name: _default(name) for name in _FIELDS if not _is_required(name)}
    problems += _cross_problems({**defaults, **values}, given=values)
    if problems:
        raise ConfigError(problems)
    return Settings(**values)
