"""`python -m aimbot.chat`, the terminal AIM client, driven through pipes like a script would."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aimbot.chat import ReplyTracker, describe_im_error, part_position
from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.events import TypingState
from tests.helpers.cli import (
    USER,
    USER_PASSWORD,
    WAIT,
    assert_no_traceback,
    chat,
    clean_env,
    oscar_fixture,  # noqa: F401 - fixture "oscar"
    run,
    running,
    signed_on,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)

PEER = "CliPeer"
PEER_PASSWORD = "cli-peer-pw-0a0a"


@pytest.fixture
def with_peer(oscar: OscarServer) -> OscarServer:
    oscar.add_account(PEER, PEER_PASSWORD)
    return oscar


async def test_interactive_chat_shows_typing_replies_and_offline_errors(
    with_peer: OscarServer, workdir: Path
) -> None:
    oscar = with_peer
    async with (
        signed_on(PEER, PEER_PASSWORD, oscar.port) as peer,
        running(
            *chat(oscar.port, peer=PEER), env=clean_env(), cwd=workdir, stdin_pipe=True
        ) as client,
    ):
        await oscar.wait_online(USER, timeout=WAIT)
        await client.write_line("hi there, café ✓")
        got = await peer.next_im()
        assert got.text == "hi there, café ✓"
        assert got.sender.replace(" ", "").lower() == USER.lower()

        await peer.client.send_typing(USER, TypingState.TYPING)
        await peer.client.send_typing(USER, TypingState.TYPING)  # a refresh: no second line
        await client.wait_stdout(rf"^{PEER} is typing…$")
        await peer.say(USER, "<b>hello</b> back &amp; forth<br>line two", html=True)
        await client.wait_stdout(rf"^{PEER}: hello back & forth$")
        await client.wait_stdout(r"^line two$")

        await peer.sign_off()
        await oscar.wait_offline(PEER, timeout=WAIT)
        await client.write_line("still there?")
        await client.wait_stderr(rf"{PEER} is not signed on; the message was not delivered")

        client.close_stdin()  # end of input ends the chat
        finished = await client.finish()

    assert finished.code == 1, finished.output  # one message could not be delivered
    assert finished.stdout.count("is typing…") == 1, finished.stdout
    assert_no_traceback(finished.output)
    assert USER_PASSWORD not in finished.output


async def test_piped_input_waits_for_the_last_reply(with_peer: OscarServer, workdir: Path) -> None:
    oscar = with_peer
    async with (
        signed_on(PEER, PEER_PASSWORD, oscar.port) as peer,
        running(
            *chat(oscar.port, peer=PEER), env=clean_env(), cwd=workdir, stdin_pipe=True
        ) as client,
    ):
        await client.write_line("what time is it?")
        client.close_stdin()  # the script is done typing before the answer exists
        assert (await peer.next_im()).text == "what time is it?"
        await peer.say(USER, "(1/2) noon,")
        await peer.say(USER, "(2/2) UTC.")
        finished = await client.finish()

    assert finished.code == 0, finished.output
    assert finished.stdout.splitlines() == [f"{PEER}: (1/2) noon,", f"{PEER}: (2/2) UTC."]


async def test_send_waits_for_every_part_of_a_split_reply(
    with_peer: OscarServer, workdir: Path
) -> None:
    oscar = with_peer
    async with signed_on(PEER, PEER_PASSWORD, oscar.port) as peer:
        # The password comes from the environment this time.
        env = clean_env(AIM_CHAT_PASSWORD=USER_PASSWORD)
        argv = chat(
            oscar.port, "--send", "long one please", "--wait-reply", "20", peer=PEER, password=None
        )
        client = asyncio.create_task(run(*argv, env=env, cwd=workdir))
        question = await peer.next_im()
        assert question.text == "long one please"
        await peer.client.send_typing(USER, TypingState.TYPING)
        await peer.say(USER, "(1/2) the first half,")
        await peer.say(USER, "(2/2) and the second.")
        async with asyncio.timeout(WAIT):
            finished = await client

    assert finished.code == 0, finished.output
    assert finished.stdout.splitlines() == ["(1/2) the first half,", "(2/2) and the second."]
    assert f"{PEER} is typing…" in finished.stderr  # shown, but not mixed into the reply


async def test_send_without_a_reply_in_time_exits_1(with_peer: OscarServer, workdir: Path) -> None:
    oscar = with_peer
    async with signed_on(PEER, PEER_PASSWORD, oscar.port) as peer:
        argv = chat(oscar.port, "--send", "anyone?", "--wait-reply", "1", peer=PEER)
        finished = await run(*argv, env=clean_env(), cwd=workdir)
        assert (await peer.next_im()).text == "anyone?"  # it was delivered; nobody answered

    assert finished.code == 1, finished.output
    assert f"no reply from {PEER} within 1 s" in finished.stderr
    assert finished.stdout == ""


async def test_send_to_an_offline_peer_says_so_at_once(
    with_peer: OscarServer, workdir: Path
) -> None:
    argv = chat(with_peer.port, "--send", "hello?", "--wait-reply", "20", peer=PEER)
    finished = await run(*argv, env=clean_env(), cwd=workdir, within=10)

    assert finished.code == 1, finished.output
    assert f"{PEER} is not signed on; the message was not delivered" in finished.stderr
    assert finished.seconds < 10  # did not sit out the 20 s wait


async def test_wrong_password_and_missing_password_are_plain_errors(
    oscar: OscarServer, workdir: Path
) -> None:
    wrong = await run(*chat(oscar.port, password="not-my-password"), env=clean_env(), cwd=workdir)
    missing = await run(*chat(oscar.port, password=None), env=clean_env(), cwd=workdir)

    assert wrong.code == 1, wrong.output
    assert f"cannot sign on as {USER}: incorrect password" in wrong.stderr
    assert "not-my-password" not in wrong.output
    assert missing.code == 2, missing.output
    assert "no password for CliUser: pass --password, set $AIM_CHAT_PASSWORD" in missing.stderr
    assert_no_traceback(wrong.output + missing.output)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(1/3) first", (1, 3)),
        ("(12/12) last", (12, 12)),
        ("(2/...) streamed, more to come", (2, 0)),
        ("(0/...) zero", None),
        ("(0/3) zero is not a part", None),
        ("(4/3) past the end", None),
        ("(1/3)no space", None),
        ("a reply (1/3) in the middle", None),
    ],
)
def test_part_position(text: str, expected: tuple[int, int] | None) -> None:
    assert part_position(text) == expected


def test_a_streamed_answer_is_complete_only_with_its_last_numbered_part() -> None:
    tracker = ReplyTracker()
    tracker.sent()
    for early in ("(1/...) one", "(2/...) two"):
        tracker.answered(early)
        assert tracker.waiting
    tracker.answered("(3/3) three")
    assert not tracker.waiting and tracker.settled


def test_im_errors_are_plain_english() -> None:
    assert describe_im_error(0x0004, "bob") == "bob is not signed on; the message was not delivered"
    assert "too fast" in describe_im_error(0x0003, "bob")
    assert describe_im_error(0x00FF, "bob") == "the server refused the message (ICBM error 0x00ff)"
