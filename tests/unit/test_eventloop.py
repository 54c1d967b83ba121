"""EVENT_LOOP: uvloop where installed, asyncio's own loop otherwise, and a clear error."""

from __future__ import annotations

import asyncio
import socket
import sys
import warnings

import pytest

from aimbot.config import ConfigError, load_settings
from aimbot.utils import eventloop
from tests.helpers.ops import settings_env


async def loop_name() -> str:
    return eventloop.running_loop_name()


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import uvloop` fail as on a machine without it (find_spec answers None)."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


def test_auto_runs_uvloop_where_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    assert eventloop.run(loop_name()) == "uvloop"
    assert eventloop.run(loop_name(), "uvloop") == "uvloop"


def test_asyncio_is_always_available_as_the_escape_hatch() -> None:
    assert eventloop.run(loop_name(), "asyncio") == "asyncio"


@pytest.mark.usefixtures("without_uvloop")
def test_auto_falls_back_to_asyncio_without_uvloop() -> None:
    assert eventloop.resolve("auto") == "asyncio"
    assert eventloop.run(loop_name(), "auto") == "asyncio"


@pytest.mark.usefixtures("without_uvloop")
def test_asking_for_a_missing_uvloop_fails_clearly_and_leaves_no_dangling_coroutine() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would be a RuntimeWarning
        with pytest.raises(eventloop.LoopUnavailable, match="EVENT_LOOP=asyncio"):
            eventloop.run(loop_name(), "uvloop")


@pytest.mark.usefixtures("without_uvloop")
def test_settings_reject_uvloop_where_it_is_not_installed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(settings_env(EVENT_LOOP="uvloop"), env_file=None)
    assert any(p.startswith("EVENT_LOOP: got uvloop") for p in caught.value.problems)
    auto = load_settings(settings_env(EVENT_LOOP="auto"), env_file=None)
    assert auto.event_loop == "auto"


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_streams_and_timers_behave_the_same_on_either_loop(choice: eventloop.LoopChoice) -> None:
    if choice == "uvloop":
        pytest.importorskip("uvloop")

    async def round_trip() -> tuple[str, bytes]:
        left, right = socket.socketpair()
        _, writer = await asyncio.open_connection(sock=left)
        reader, other = await asyncio.open_connection(sock=right)
        writer.write(b"hello")
        await writer.drain()
        async with asyncio.timeout(5):
            got = await reader.readexactly(5)
        for w in (writer, other):
            w.close()
            await w.wait_closed()
        return eventloop.running_loop_name(), got

    assert eventloop.run(round_trip(), choice) == (choice, b"hello")


def test_an_event_loop_named_in_the_environment_is_read_or_refused_clearly() -> None:
    assert eventloop.parse_choice(" UVloop ") == "uvloop"
    with pytest.raises(ValueError, match="EVENT_LOOP: got 'trio'; expected one of auto"):
        eventloop.parse_choice("trio")
