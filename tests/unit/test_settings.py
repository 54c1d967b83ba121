"""Settings: every variable documented, defaulted, range-checked, all problems reported at once."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aimbot import wiring
from aimbot.config import ENV_NAMES, MASK, ConfigError, Secret, Settings, load_settings
from aimbot.config.settings import PLACEHOLDERS
from tests.helpers.ops import (
    REPO_ROOT,
    REQUIRED_ENV,
    TEST_API_KEY,
    TEST_PASSWORD,
    make_settings,
    settings_env,
)

ENV_EXAMPLE = REPO_ROOT / ".env.example"
GROUPS = ["AIM", "Dify", "Bot behaviour", "State", "Ops"]
REQUIRED = {"AIM_USERNAME", "AIM_PASSWORD", "DIFY_API_KEY"}


def problems_of(env: dict[str, str], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, env_file=kwargs.pop("env_file", None), **kwargs)
    return caught.value.problems


# --- the documented defaults ------------------------------------------------------------------


def test_defaults_are_the_documented_contract() -> None:
    settings = make_settings()
    assert settings.aim_username == "Test Bot"
    assert settings.aim_password == Secret(TEST_PASSWORD)
    assert settings.dify_api_key.get() == TEST_API_KEY
    expected = {
        "aim_server": "127.0.0.1",
        "aim_port": 5190,
        "aim_keepalive_interval": 30.0,
        "aim_read_timeout": 15.0,
        "aim_connect_timeout": 10.0,
        "aim_reconnect_base": 1.0,
        "aim_reconnect_cap": 300.0,
        "aim_throttle": "auto",
        "aim_profile": "I am an AI assistant bot. Send me a message; type help for commands.",
        "max_reply_bytes": 0,
        "outbox_ttl": 86400.0,
        "busy_notice_after": 30.0,
        "dify_api_url": "https://api.dify.ai/v1",
        "dify_response_mode": "streaming",
        "dify_inputs": {},
        "dify_user_prefix": "aim:",
        "dify_connect_timeout": 10.0,
        "dify_read_timeout": 60.0,
        "dify_stream_deadline": 180.0,
        "dify_retry_base": 1.0,
        "dify_retry_cap": 30.0,
        "dify_retry_max_attempts": 5,
        "dify_retry_max_time": 120.0,
        "dify_breaker_threshold": 5,
        "dify_breaker_cooldown": 30.0,
        "dify_max_concurrency": 8,
        "dify_delete_on_clear": False,
        "buffer_window": 1.5,
        "buffer_max_wait": 6.0,
        "buffer_mode": "typing",
        "reply_format": "html",
        "allowed_users": frozenset(),
        "blocked_users": frozenset(),
        "ignored_senders": frozenset(),
        "user_rate_limit": 20,
        "max_input_chars": 2000,
        "typing_notifications": True,
        "data_dir": Path("data"),
        "inbox_max_age": 3600.0,
        "log_level": "INFO",
        "log_file": None,
        "log_format": "text",
        "log_max_bytes": 10 * 1024 * 1024,
        "log_backup_count": 5,
        "log_message_text": False,
        "health_host": "127.0.0.1",
        "health_port": 8080,
        "health_connection_timeout": 5.0,
        "health_max_connections": 64,
        "shutdown_grace": 10.0,
        "event_loop": "auto",
        "restart_notice_window": 120.0,
        "max_answer_chars": 8000,
        "max_reply_parts": 10,
        "stream_parts": True,
    }
    actual = {name: getattr(settings, name) for name in expected}
    assert actual == expected
    assert set(expected) | {n.lower() for n in REQUIRED} == {
        f.name for f in dataclasses.fields(Settings)
    }


# --- .env.example is the documentation: it must agree with Settings exactly ------------------


def parse_example(text: str) -> tuple[list[str], list[tuple[str, str, str, list[str]]]]:
    """(group headings, [(group, NAME, value, comment lines just above)])."""
    groups: list[str] = []
    variables = []
    comments: list[str] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        ruled = index + 2 < len(lines) and lines[index + 2].startswith("# ---")
        if line.startswith("# ---") and ruled:
            groups.append(lines[index + 1][2:].strip())
        if line.startswith("#"):
            comments.append(line)
        elif "=" in line:
            name, value = line.split("=", 1)
            variables.append((groups[-1] if groups else "", name, value, comments))
            comments = []
        else:
            comments = []
    return groups, variables


def test_env_example_lists_every_variable_once_in_order_grouped_and_commented() -> None:
    groups, variables = parse_example(ENV_EXAMPLE.read_text(encoding="utf-8"))
    assert groups == GROUPS
    names = [name for _, name, _, _ in variables]
    assert names == list(ENV_NAMES)
    for group, name, _, comments in variables:
        assert comments, f"{name} has no comment above it"
        assert group, f"{name} is outside any group"
        documentation = " ".join(comments)
        if name in REQUIRED:
            assert "Required" in documentation, name
        else:
            assert "Default" in documentation, f"{name}'s comment does not give its default"
    # Settings declares its fields in the same groups, in the same order.
    group_of = {name: group for group, name, _, _ in variables}
    order = [group_of[name] for name in ENV_NAMES]
    assert order == sorted(order, key=GROUPS.index)


def test_env_example_values_are_exactly_the_defaults() -> None:
    settings = load_settings({}, env_file=ENV_EXAMPLE, overrides=REQUIRED_ENV)
    for f in dataclasses.fields(Settings):
        if f.name.upper() in REQUIRED:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            assert f.default_factory is not dataclasses.MISSING, f.name
            default = f.default_factory()
        assert getattr(settings, f.name) == default, f.name.upper()


def test_env_example_copied_unedited_is_rejected_for_its_placeholders() -> None:
    problems = problems_of({}, env_file=ENV_EXAMPLE)
    assert len(problems) == len(REQUIRED)
    for name, problem in zip(sorted(REQUIRED), sorted(problems), strict=True):
        assert problem.startswith(f"{name} (from {ENV_EXAMPLE})")
        assert "placeholder" in problem
    assert set(PLACEHOLDERS) == REQUIRED


# --- where values come from ------------------------------------------------------------------


def test_env_file_fills_only_what_the_environment_lacks(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "AIM_USERNAME=FromFile\nAIM_PORT=1111\nexport LOG_LEVEL=debug\n"
        "AIM_PASSWORD='file $HOME ${HOME} pass'\nDIFY_API_KEY=app-from-file\n"
        "# a comment\n\nREPLY_FORMAT=plain   # trailing comment\n",
        encoding="utf-8",
    )
    environment = {"AIM_USERNAME": "FromEnv", "AIM_SERVER": "env.example.com"}
    settings = load_settings(environment, env_file=env_file, overrides={"AIM_PORT": "2222"})
    assert settings.aim_username == "FromEnv"  # the environment beats the file
    assert settings.aim_server == "env.example.com"
    assert settings.aim_port == 2222  # overrides beat both
    assert settings.log_level == "DEBUG"  # `export` lines and lower case are fine
    assert settings.reply_format == "plain"
    assert settings.aim_password.get() == "file $HOME ${HOME} pass"  # taken literally
    assert settings.dify_api_key.get() == "app-from-file"
    assert "AIM_PORT" not in environment and "LOG_LEVEL" not in os.environ


def test_environ_none_means_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_env(AIM_PORT="4444").items():
        monkeypatch.setenv(name, value)
    assert load_settings(env_file=None).aim_port == 4444


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    settings = load_settings(settings_env(), env_file=tmp_path / "absent.env")
    assert settings.aim_port == 5190


def test_unreadable_or_broken_env_file_is_a_problem_without_echoing_the_line(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.env"
    broken.write_text("AIM_PORT=5190\nthis is not an assignment hunter2\nAIM_SERVER\n")
    problems = problems_of(settings_env(), env_file=broken)
    assert problems == [
        f"{broken} line 2: cannot parse this line; expected NAME=value",
        f"{broken} line 3: AIM_SERVER has no '=value'",
    ]
    assert problems_of(settings_env(), env_file=tmp_path) == [
        f"{tmp_path}: cannot read it (Is a directory)"
    ]
    latin1 = tmp_path / "latin1.env"
    latin1.write_bytes(b"AIM_SERVER=caf\xe9\n")
    assert problems_of(settings_env(), env_file=latin1) == [f"{latin1}: not UTF-8 text"]


def test_misspelt_variables_are_warned_about_with_a_suggestion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AIM_PASWORD=oops\nCOMPOSE_PROJECT_NAME=fleet\n")
    with caplog.at_level(logging.WARNING, logger="aimbot.config.settings"):
        load_settings(settings_env(DIFY_API_KEYS="x"), env_file=env_file)
    messages = [record.getMessage() for record in caplog.records]
    assert any("AIM_PASWORD" in m and "did you mean AIM_PASSWORD?" in m for m in messages)
    assert any("DIFY_API_KEYS" in m and "did you mean DIFY_API_KEY?" in m for m in messages)
    assert any("COMPOSE_PROJECT_NAME" in m and "did you mean" not in m for m in messages)
    assert all("oops" not in m for m in messages)


def test_unknown_override_is_a_problem() -> None:
    assert problems_of(settings_env(), overrides={"AIM_PROT": "1"}) == ["AIM_PROT: unknown setting"]


def test_empty_means_default_except_where_empty_is_a_value() -> None:
    settings = make_settings(
        AIM_SERVER="", AIM_PORT="  ", DIFY_USER_PREFIX="", LOG_FILE="", ALLOWED_USERS=""
    )
    assert settings.aim_server == "127.0.0.1"
    assert settings.aim_port == 5190
    assert settings.dify_user_prefix == ""
    assert settings.log_file is None
    assert settings.allowed_users == frozenset()
    assert problems_of(settings_env(AIM_USERNAME="  ")) == [
        "AIM_USERNAME: required but not set; expected a screen name: letters, digits and spaces "
        "(or an ICQ number, or name@domain)"
    ]


# --- checking every value ---------------------------------------------------------------------

# (variable, accepted values, rejected values), straight from the ranges.
RANGES: list[tuple[str, list[str], list[str]]] = [
    ("AIM_USERNAME", ["Bob Smith", "123456", "bot@example.com"], ["!!!", "x" * 98, "a\x00b"]),
    ("AIM_SERVER", ["oscar.example.com", "10.0.0.1", "::1"], ["a\x01b", "x" * 254]),
    ("AIM_PORT", ["1", "65535", " 5190 "], ["0", "65536", "abc", "1.5", "-1"]),
    ("AIM_KEEPALIVE_INTERVAL", ["5", "300", "7.5"], ["4.99", "301", "nan", "inf", "x"]),
    ("AIM_READ_TIMEOUT", ["1", "120"], ["0.5", "121", "-inf"]),
    ("AIM_CONNECT_TIMEOUT", ["1", "120"], ["0", "121"]),
    ("AIM_RECONNECT_BASE", ["0.1", "60"], ["0.05", "61"]),
    ("AIM_RECONNECT_CAP", ["1", "3600"], ["0.5", "3601"]),
    ("AIM_THROTTLE", ["auto", "AUTO", "false", "on"], ["sometimes"]),
    (
        "AIM_PROFILE",
        ["", "Ask me anything — type help", "é" * 512],
        ["x" * 1025, "é" * 513, "two\nlines"],
    ),
    ("MAX_REPLY_BYTES", ["0", "64", "8000"], ["1", "63", "8001", "-1"]),
    ("OUTBOX_TTL", ["60", "2592000"], ["59", "2592001"]),
    (
        "DIFY_API_URL",
        ["http://localhost:5001/v1", "https://api.dify.ai/v1/"],
        ["ftp://x", "api.dify.ai/v1", "http://", "https://h:99999/v1", "http://a b/"],
    ),
    ("DIFY_RESPONSE_MODE", ["streaming", "blocking", "BLOCKING"], ["stream", "sse"]),
    ("DIFY_INPUTS", ["{}", '{"a": [1, {"b": null}]}'], ["[]", '"x"', "{bad", "null", "1"]),
    ("DIFY_USER_PREFIX", ["aim:", "x" * 64], ["x" * 65, "a\tb"]),
    ("DIFY_CONNECT_TIMEOUT", ["1", "120"], ["0.9", "121"]),
    ("DIFY_READ_TIMEOUT", ["10.001", "600"], ["10", "9", "601"]),
    ("DIFY_STREAM_DEADLINE", ["10", "3600"], ["9", "3601"]),
    ("DIFY_RETRY_BASE", ["0.1", "30"], ["0.09", "61"]),
    ("DIFY_RETRY_CAP", ["1", "3600"], ["0.5", "3601"]),
    ("DIFY_RETRY_MAX_ATTEMPTS", ["1", "20"], ["0", "21"]),
    ("DIFY_RETRY_MAX_TIME", ["1", "3600"], ["0", "3601"]),
    ("DIFY_BREAKER_THRESHOLD", ["1", "100"], ["0", "101"]),
    ("DIFY_BREAKER_COOLDOWN", ["1", "3600"], ["0", "3601"]),
    ("DIFY_MAX_CONCURRENCY", ["1", "256"], ["0", "257"]),
    ("DIFY_DELETE_ON_CLEAR", ["true", "off"], ["maybe", "2"]),
    ("BUFFER_WINDOW", ["0", "6"], ["-0.1", "30.5", "7"]),
    ("BUFFER_MAX_WAIT", ["1.5", "120"], ["1", "121"]),
    ("BUFFER_MODE", ["typing", "window", "Window"], ["typed", "both"]),
    ("REPLY_FORMAT", ["html", "plain", "HTML"], ["markdown"]),
    ("ALLOWED_USERS", ["bob", "Bob Smith, alice ,", "a@b.c,12345"], ["bob,!!!", "b\x00b"]),
    ("BLOCKED_USERS", ["spammer"], ["sp ammer, <script>"]),
    ("IGNORED_SENDERS", ["OtherBot, relay"], ["not!a name"]),
    ("BUSY_NOTICE_AFTER", ["0", "30", "3600"], ["-1", "3601", "soon"]),
    ("USER_RATE_LIMIT", ["0", "1", "10000"], ["-1", "10001"]),
    ("MAX_INPUT_CHARS", ["1", "100000"], ["0", "100001"]),
    ("TYPING_NOTIFICATIONS", ["no", "YES"], ["nope"]),
    ("RESTART_NOTICE_WINDOW", ["0", "86400"], ["-1", "86401"]),
    ("MAX_ANSWER_CHARS", ["100", "1000000"], ["99", "1000001", "0"]),
    ("MAX_REPLY_PARTS", ["1", "100"], ["0", "101"]),
    ("STREAM_PARTS", ["false", "on"], ["sometimes"]),
    ("DATA_DIR", ["/app/data", "state"], ["."]),
    ("INBOX_MAX_AGE", ["0", "604800"], ["-1", "604801"]),
    ("LOG_LEVEL", ["DEBUG", "info", "Warning", "ERROR"], ["TRACE", "CRITICAL"]),
    ("LOG_FILE", ["logs/aimbot.log"], ["."]),
    ("LOG_FORMAT", ["text", "json"], ["xml"]),
    ("LOG_MAX_BYTES", ["1024", "1073741824"], ["1023", "1073741825"]),
    ("LOG_BACKUP_COUNT", ["1", "100"], ["0", "101"]),
    ("LOG_MESSAGE_TEXT", ["true", "off"], ["maybe"]),
    ("HEALTH_HOST", ["0.0.0.0", "::1"], ["h\nost"]),
    ("HEALTH_PORT", ["0", "1", "65535"], ["-1", "65536"]),
    ("HEALTH_CONNECTION_TIMEOUT", ["0.5", "60"], ["0.4", "61", "0"]),
    ("HEALTH_MAX_CONNECTIONS", ["1", "10000"], ["0", "10001"]),
    ("SHUTDOWN_GRACE", ["0", "300"], ["-1", "301"]),
    ("EVENT_LOOP", ["auto", "asyncio", "uvloop", "UVLOOP"], ["trio", "uv loop"]),
    ("AIM_PASSWORD", ["p", " spaced "], ["two\nlines"]),
    ("DIFY_API_KEY", ["app-x"], ["a\rb"]),
]


def test_the_range_table_covers_every_variable() -> None:
    assert {name for name, _, _ in RANGES} == set(ENV_NAMES)


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, good, _ in RANGES for value in good]
)
def test_accepted_values(name: str, value: str) -> None:
    settings = make_settings(**{name: value})
    # What was read prints back (describe) as something that reads the same way again.
    shown = dict(settings.describe())[name]
    if name not in ("AIM_PASSWORD", "DIFY_API_KEY"):
        assert make_settings(**{name: shown}) == settings


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, _, bad in RANGES for value in bad]
)
def test_rejected_values_name_the_variable_and_what_is_allowed(name: str, value: str) -> None:
    problems = problems_of(settings_env(**{name: value}))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name}: got ")
    assert "expected" in problems[0]


def test_problems_show_what_was_given() -> None:
    [problem] = problems_of(settings_env(AIM_PORT="70000"))
    assert problem == "AIM_PORT: got '70000'; expected a whole number from 1 to 65535"
    [problem] = problems_of(settings_env(DIFY_INPUTS="{bad"))
    assert problem.startswith("DIFY_INPUTS: got '{bad', not valid JSON (")
    [problem] = problems_of(settings_env(BUFFER_WINDOW="10", BUFFER_MAX_WAIT="5"))
    assert problem == (
        "BUFFER_MAX_WAIT: got 5, which is below BUFFER_WINDOW (10); expected at least BUFFER_WINDOW"
    )
    [problem] = problems_of(settings_env(AIM_SERVER="x" * 300))
    assert len(problem) < 250 and "…" in problem


def test_every_problem_is_reported_at_once() -> None:
    env = {
        "AIM_PORT": "http",
        "DIFY_API_URL": "localhost",
        "LOG_LEVEL": "LOUD",
        "DIFY_INPUTS": "[1]",
        "AIM_RECONNECT_BASE": "10",
        "AIM_RECONNECT_CAP": "5",
        "DIFY_RETRY_BASE": "20",
        "DIFY_RETRY_CAP": "10",
        "HEALTH_PORT": "99999",
    }
    problems = problems_of(env)
    named = [problem.split(":", 1)[0] for problem in problems]
    assert sorted(named) == sorted(
        [
            "AIM_USERNAME",
            "AIM_PASSWORD",
            "DIFY_API_KEY",
            "AIM_PORT",
            "DIFY_API_URL",
            "LOG_LEVEL",
            "DIFY_INPUTS",
            "AIM_RECONNECT_CAP",
            "DIFY_RETRY_CAP",
            "HEALTH_PORT",
        ]
    )
    message = str(ConfigError(problems))
    assert message.startswith(f"invalid configuration ({len(problems)} problems):\n")
    assert all(f"  - {problem}" in message.splitlines() for problem in problems)
    assert ConfigError.exit_code == 2


def test_user_lists_are_stored_normalised() -> None:
    settings = make_settings(ALLOWED_USERS="Bob Smith, ALICE ,,", BLOCKED_USERS=" Spam Bot ")
    assert settings.allowed_users == frozenset({"bobsmith", "alice"})
    assert settings.blocked_users == frozenset({"spambot"})


def test_json_inputs_and_url_are_normalised() -> None:
    settings = make_settings(
        DIFY_INPUTS='{"lang": "de", "n": 2}', DIFY_API_URL=" http://dify.local:5001/v1/ "
    )
    assert dict(settings.dify_inputs) == {"lang": "de", "n": 2}
    assert settings.dify_api_url == "http://dify.local:5001/v1"
    with pytest.raises(TypeError):
        settings.dify_inputs["lang"] = "en"  # type: ignore[index]


@pytest.mark.parametrize(
    ("word", "expected"),
    [(w, True) for w in ("true", "1", "yes", "on", "TRUE", " On ")]
    + [(w, False) for w in ("false", "0", "no", "off", "False", "NO")],
)
def test_booleans_accept_the_usual_words(word: str, expected: bool) -> None:
    assert make_settings(DIFY_DELETE_ON_CLEAR=word).dify_delete_on_clear is expected


def test_constructing_settings_directly_is_validated_too() -> None:
    settings = make_settings()
    with pytest.raises(ConfigError) as caught:
        dataclasses.replace(settings, aim_port=0, buffer_window=50.0, log_level="LOUD")  # type: ignore[arg-type]
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "AIM_PORT",
        "BUFFER_WINDOW",
        "LOG_LEVEL",
    ]
    with pytest.raises(ConfigError, match="AIM_PASSWORD"):
        dataclasses.replace(settings, aim_password="plain str")  # type: ignore[arg-type]


# --- secrets ----------------------------------------------------------------------------------


def test_secret_prints_masked_everywhere_but_get() -> None:
    secret = Secret("hunter2-very-secret")
    for shown in (
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>20}",
        "%s" % secret,  # noqa: UP031 - the way logging formats its arguments
    ):
        assert "hunter2" not in shown
        assert MASK in shown
    assert secret.get() == "hunter2-very-secret"
    assert secret == Secret("hunter2-very-secret")
    assert secret == "hunter2-very-secret"
    assert secret != Secret("other")
    assert secret != 42
    assert hash(secret) == hash(Secret("hunter2-very-secret"))
    assert bool(secret) and not Secret("")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_secrets_never_appear_in_reprs_descriptions_or_errors() -> None:
    settings = make_settings()
    printed = [repr(settings), str(settings), str(settings.describe())]
    for text in printed:
        assert TEST_PASSWORD not in text and TEST_API_KEY not in text
    described = dict(settings.describe())
    assert list(described) == list(ENV_NAMES)
    assert described["AIM_PASSWORD"] == MASK and described["DIFY_API_KEY"] == MASK
    assert sorted(settings.secrets()) == sorted([TEST_PASSWORD, TEST_API_KEY])

    bad_password = "line-one-secret\nline-two-secret"
    error = str(ConfigError(problems_of({"AIM_PASSWORD": bad_password, "DIFY_API_KEY": "a\rb"})))
    assert "line-one-secret" not in error and "line-two-secret" not in error
    assert "AIM_PASSWORD: got ********;" in error


# --- properties -------------------------------------------------------------------------------


@given(name=st.sampled_from(ENV_NAMES), value=st.text(max_size=40))
def test_any_text_in_any_variable_loads_or_is_a_config_error(name: str, value: str) -> None:
    try:
        settings = load_settings(settings_env(**{name: value}), env_file=None)
    except ConfigError as e:
        assert e.problems and all(problem.startswith(name) for problem in e.problems)
        if name in ("AIM_PASSWORD", "DIFY_API_KEY") and len(value) > 3:
            assert value not in str(e)
    else:
        assert isinstance(settings, Settings)


SCREEN_NAME = st.from_regex(r"[a-z][a-z0-9]{2,15}", fullmatch=True)

VALID_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "AIM_SERVER": st.from_regex(r"[a-z0-9.-]{1,40}", fullmatch=True),
        "AIM_PORT": st.integers(1, 65535).map(str),
        "AIM_KEEPALIVE_INTERVAL": st.floats(5, 300).map(repr),
        "AIM_RECONNECT_BASE": st.floats(0.1, 60).map(repr),
        "AIM_RECONNECT_CAP": st.floats(60, 3600).map(repr),
        "MAX_REPLY_BYTES": st.one_of(st.just(0), st.integers(64, 8000)).map(str),
        "DIFY_INPUTS": st.dictionaries(
            st.text(max_size=5), st.integers() | st.text(max_size=5)
        ).map(json.dumps),
        "DIFY_READ_TIMEOUT": st.floats(10, 600, exclude_min=True).map(repr),
        "DIFY_RETRY_BASE": st.floats(0.1, 30).map(repr),
        "DIFY_RETRY_CAP": st.floats(30, 3600).map(repr),
        "BUFFER_WINDOW": st.floats(0, 6).map(repr),
        "BUFFER_MAX_WAIT": st.floats(6, 120).map(repr),
        "ALLOWED_USERS": st.lists(SCREEN_NAME, max_size=4).map(",".join),
        "BLOCKED_USERS": st.lists(SCREEN_NAME, max_size=4).map(", ".join),
        "DIFY_DELETE_ON_CLEAR": st.sampled_from(["true", "false", "yes", "off"]),
        "LOG_LEVEL": st.sampled_from(["debug", "INFO", "Warning", "error"]),
        "LOG_FILE": st.sampled_from(["", "logs/a.log", "/var/log/aimbot.log"]),
        "HEALTH_PORT": st.integers(0, 65535).map(str),
    },
)


# Each example parses whole configurations; 1,000 are plenty even under the CI profile.
@hypothesis_settings(max_examples=min(hypothesis_settings().max_examples, 1000))
@given(values=VALID_VALUES)
def test_describe_reads_back_as_the_same_settings(values: dict[str, str]) -> None:
    settings = make_settings(**values)
    shown = dict(settings.describe())
    shown.update(AIM_PASSWORD=TEST_PASSWORD, DIFY_API_KEY=TEST_API_KEY)
    assert load_settings(shown, env_file=None) == settings


def test_the_profile_reaches_the_oscar_client_as_escaped_html() -> None:
    client = wiring.oscar_client(make_settings(AIM_PROFILE="Ask me <anything> & type help"))
    assert client.profile == "Ask me &lt;anything&gt; &amp; type help"
    assert wiring.oscar_client(make_settings(AIM_PROFILE="")).profile is None
    assert "type help" in (wiring.oscar_client(make_settings()).profile or "")


@pytest.mark.parametrize(
    "url",
    [
        "https://user:Zq9Xk7@dify.example.com/v1",
        "https://user:Zq9@Xk7@dify.example.com/v1",  # an "@" inside the password
        "https://Zq9Xk7@dify.example.com/v1",
        "ftp://user:Zq9Xk7@dify.example.com/v1",
    ],
)
def test_credentials_in_dify_api_url_are_refused_and_masked(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(DIFY_API_URL=url)
    assert "Zq9" not in str(info.value) and "Xk7" not in str(info.value)
    assert "DIFY_API_URL" in str(info.value) and f"{MASK}@dify.example.com" in str(info.value)
    good = make_settings()
    with pytest.raises(ConfigError) as direct:
        dataclasses.replace(good, dify_api_url=url)
    assert "Zq9" not in str(direct.value) and "Xk7" not in str(direct.value)


def test_dify_options_refuse_credentials_without_echoing_them() -> None:
    from aimbot.api.dify_client import DifyOptions

    with pytest.raises(ValueError, match="user:password") as info:
        DifyOptions(base_url="https://user:Zq9Xk7@dify.example.com/v1")
    assert "Zq9Xk7" not in str(info.value)
