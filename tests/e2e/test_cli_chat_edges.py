"""The terminal client's edges: replies while a send is paced, piped input that waits for every
reply (bounded), and its own words instead of the library's WARNING lines."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aimbot.chat import ChatOptions, ChatSession, Printer, interactive
from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.events import Event, IncomingIM
from tests.helpers.cli import (
    USER,
    AimUser,
    Process,
    chat,
    clean_env,
    oscar_fixture,  # noqa: F401 - fixture "oscar"
    run,
    running,
    signed_on,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)
from tests.helpers.dify import refused_port

PEER = "EdgePeer"
PEER_PASSWORD = "edge-peer-pw-1b2c"


@pytest.fixture
def with_peer(oscar: OscarServer) -> OscarServer:
    oscar.add_account(PEER, PEER_PASSWORD)
    return oscar


@contextlib.asynccontextmanager
async def piped_chat(oscar: OscarServer, workdir: Path) -> AsyncIterator[tuple[AimUser, Process]]:
    """The peer signed on, and the chat client talking to it with its stdin a pipe."""
    async with (
        signed_on(PEER, PEER_PASSWORD, oscar.port) as peer,
        running(
            *chat(oscar.port, peer=PEER), env=clean_env(), cwd=workdir, stdin_pipe=True
        ) as client,
    ):
        yield peer, client


async def test_piped_lines_wait_for_every_reply(with_peer: OscarServer, workdir: Path) -> None:
    async with piped_chat(with_peer, workdir) as (peer, client):
        for n in (1, 2, 3):
            await client.write_line(f"question {n}")
        client.close_stdin()
        for n in (1, 2, 3):
            assert (await peer.next_im()).text == f"question {n}"
            await peer.say(USER, f"answer {n}")  # one by one, the later ones after EOF
        finished = await client.finish()
    assert finished.code == 0, finished.output
    assert finished.stdout.splitlines() == [f"{PEER}: answer {n}" for n in (1, 2, 3)]


async def test_piped_lines_a_peer_joined_into_one_answer_end_after_a_quiet_spell(
    with_peer: OscarServer, workdir: Path
) -> None:
    async with piped_chat(with_peer, workdir) as (peer, client):
        await client.write_line("part one")
        await client.write_line("part two")
        client.close_stdin()
        await peer.next_im()
        await peer.next_im()
        await peer.say(USER, "both parts, answered together")
        finished = await client.finish()
    assert finished.code == 0, finished.output
    assert finished.stdout.splitlines() == [f"{PEER}: both parts, answered together"]


async def test_own_message_first_and_no_library_warnings(workdir: Path) -> None:
    with refused_port() as port:
        result = await run(*chat(port, peer=PEER), env=clean_env(), cwd=workdir)
    assert result.code == 1
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("cannot reach the AIM server at 127.0.0.1:"), lines
    assert "WARNING" not in result.stderr


class RecordingPrinter(Printer):
    def __init__(self) -> None:
        super().__init__(io.StringIO(), io.StringIO())
        self.said: list[str] = []
        self.changed = asyncio.Event()

    def say(self, line: str) -> None:
        self.said.append(line)
        self.changed.set()

    async def wait_said(self, text: str) -> None:
        while not any(text in line for line in self.said):
            self.changed.clear()
            await self.changed.wait()


class PacedSession(ChatSession):
    """A session whose send is held (as the client's rate pacing would) until released."""

    def __init__(self) -> None:
        options = ChatOptions("me", "pw-unused-1", "127.0.0.1", 1, PEER)
        self.recorder = RecordingPrinter()
        super().__init__(options, self.recorder)
        self.release = asyncio.Event()
        self.sending = asyncio.Event()
        self.sent = 0
        self.sent_changed = asyncio.Condition()
        self.incoming: asyncio.Queue[Event] = asyncio.Queue()

    async def send(self, text: str) -> bool:
        self.sending.set()
        await self.release.wait()
        async with self.sent_changed:
            self.sent += 1
            self.sent_changed.notify_all()
        return True

    async def wait_sent(self, count: int) -> None:
        async with self.sent_changed:
            await self.sent_changed.wait_for(lambda: self.sent >= count)

    async def next_event(self, within: float | None) -> Event | None:
        try:
            async with asyncio.timeout(within):
                return await self.incoming.get()
        except TimeoutError:
            return None


async def test_replies_show_while_a_send_is_paced() -> None:
    session = PacedSession()
    stdin = io.StringIO("first\nsecond\n")  # piped input: two lines, then its end
    runner = asyncio.create_task(interactive(session, stdin, wait=10, settle=0.1))
    try:
        async with asyncio.timeout(10):
            await session.sending.wait()
        session.incoming.put_nowait(im("an earlier answer", b"c"))
        async with asyncio.timeout(10):
            await session.recorder.wait_said("an earlier answer")
        assert not session.release.is_set()  # shown while the send was still held
        session.release.set()
        async with asyncio.timeout(10):
            await session.wait_sent(2)  # answers count only after the sends
        session.incoming.put_nowait(im("answer", b"d"))
        session.incoming.put_nowait(im("answer 2", b"e"))
        async with asyncio.timeout(10):
            assert await runner == 0
    finally:
        runner.cancel()


def im(text: str, cookie: bytes) -> IncomingIM:
    return IncomingIM(PEER, text, text, cookie * 8, False)
