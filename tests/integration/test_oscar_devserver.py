"""The devserver at the byte level (hand-driven raw connections) and its command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from aimbot.devserver.__main__ import main as devserver_main
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM
from aimbot.oscar.snacs import (
    FlapHello,
    IcbmIncomingIM,
    IcbmParamsSet,
    IcbmSendIM,
    MessageData,
    RateParamsReply,
    RateParamsRequest,
    TextFragment,
)
from aimbot.oscar.snacs_services import (
    FEEDBAG_BUDDY,
    BuddyArrived,
    BuddyDeparted,
    LocateUserInfoReply,
)
from aimbot.oscar.wire import Channel, Frame, TlvBlock, encode_snac, pack_str8, pack_u32
from tests.helpers.oscar import HOST, PASSWORDS, WAIT, RawPeer, running_server, session_pool
from tests.helpers.purple_script import feedbag_item, purple_sign_on, user_info_query

ROOT = Path(__file__).resolve().parents[2]


async def test_im_tlvs_are_relayed_byte_exact_except_the_ack_request() -> None:
    async with running_server() as server:
        alice = await RawPeer.sign_on(server.port, "alice", PASSWORDS["alice"])
        bob = await RawPeer.sign_on(server.port, "bobsmith", PASSWORDS["bobsmith"])
        await server.wait_online("alice")
        await server.wait_online("bobsmith")
        message = MessageData((TextFragment(0x0003, 0xFFFF, b"caf\xe9"),), b"\x01\x01\x02")
        tlvs = TlvBlock.of(
            (0x0002, message.encode()), (0x0003, b""), (0x0099, b"\x00odd\xff"), (0x000B, b"")
        )
        alice.send_snac(IcbmSendIM(b"COOKIE01", 1, "Bob Smith", tlvs), request_id=77)
        _, body = await bob.snac(lambda h: (h.family, h.subgroup) == (4, 7))
        relayed = IcbmIncomingIM.decode(body)
        assert relayed.tlvs.encode() == tlvs.without(0x0003).encode()
        assert relayed.cookie == b"COOKIE01"
        assert relayed.sender.screen_name == "alice"
        ack_header, ack = await alice.snac(lambda h: (h.family, h.subgroup) == (4, 0x0C))
        assert ack_header.request_id == 77
        assert ack.startswith(b"COOKIE01")
        await alice.close()
        await bob.close()


async def test_utf8_under_charset_0_in_html_reaches_the_client_as_text() -> None:
    async with session_pool() as pool:
        bob = await pool.sign_on("bobsmith")
        raw = await RawPeer.sign_on(pool.server.port, "alice", PASSWORDS["alice"])
        await pool.server.wait_online("alice")
        html = "<HTML><BODY><FONT>café &amp; 😀<BR>bye</FONT></BODY></HTML>"
        message = MessageData((TextFragment(0x0000, 0, html.encode()),))
        raw.send_snac(IcbmSendIM(bytes(8), 1, "bobsmith", TlvBlock.of((2, message.encode()))))
        got = await bob.log.next(IncomingIM)
        assert got.text == "café & 😀\nbye"
        assert got.html == html
        await raw.close()


async def test_unknown_snac_gets_an_invalid_snac_error_with_our_request_id() -> None:
    async with running_server() as server:
        peer = await RawPeer.sign_on(server.port, "alice", PASSWORDS["alice"])
        for family, subgroup in ((0x0013, 0x0099), (0x0055, 0x0003)):
            peer.send(Channel.DATA, encode_snac(family, subgroup, 4242, b""))
            header, body = await peer.snac(lambda h: h.subgroup == 0x0001)
            assert (header.family, header.request_id) == (family, 4242)
            assert body[:2] == b"\x00\x01"
        assert server.is_online("alice")  # an error, never a disconnect
        await peer.close()


@pytest.mark.parametrize(("version", "record_size"), [(1, 30), (3, 35)])
async def test_rate_records_follow_the_declared_oservice_version(
    version: int, record_size: int
) -> None:
    async with running_server() as server:
        peer = await RawPeer.sign_on(
            server.port, "alice", PASSWORDS["alice"], oservice_version=version
        )
        peer.send_snac(RateParamsRequest())
        _, body = await peer.snac(lambda h: (h.family, h.subgroup) == (1, 7))
        reply = RateParamsReply.decode(body, extended=record_size == 35)
        assert len(reply.classes) == 5
        groups_size = sum(4 + 4 * len(g.members) for g in reply.groups)
        assert len(body) == 2 + 5 * record_size + groups_size
        await peer.close()


async def test_malformed_client_frame_closes_only_that_connection() -> None:
    async with session_pool() as pool:
        bob = await pool.sign_on("bobsmith")
        bad = await RawPeer.open(pool.server.port)
        bad.writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await bad.closed()
        alice = await pool.sign_on("alice")
        await alice.client.send_im("bobsmith", "server still fine")
        assert (await bob.log.next(IncomingIM)).text == "server still fine"


async def test_malformed_known_snac_drops_the_session() -> None:
    async with running_server() as server:
        peer = await RawPeer.sign_on(server.port, "alice", PASSWORDS["alice"])
        await server.wait_online("alice")
        peer.send(Channel.DATA, encode_snac(4, 2, 1, IcbmParamsSet().encode()[:10]))
        await peer.closed()
        await server.wait_offline("alice", WAIT)


async def test_login_must_finish_within_the_auth_deadline() -> None:
    async with running_server(auth_timeout=0.3) as server:
        idle = await RawPeer.open(server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        frames = await idle.closed()
        assert loop.time() - started < 0.3 + 1.0
        assert frames == [Frame(Channel.SIGNON, 100, FlapHello().encode())]


async def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    async with running_server(max_frame_payload=1024) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(b"\x2a\x01\x00\x01\x10\x00")  # announces 4096 bytes
        await peer.closed()


async def test_too_many_frames_during_login_close_the_connection() -> None:
    async with running_server() as server:
        peer = await RawPeer.open(server.port)
        peer.send(Channel.SIGNON, FlapHello().encode())
        for _ in range(11):
            peer.send(Channel.KEEPALIVE, b"")
        await peer.closed()


async def test_forged_cookie_is_refused() -> None:
    async with running_server() as server:
        peer = await RawPeer.open(server.port)
        peer.send(Channel.SIGNON, FlapHello.with_cookie(b"forged").encode())
        await peer.closed()
        assert not server.is_online("alice")


async def test_duplicate_login_without_tlv_support_gets_the_four_byte_signoff() -> None:
    async with running_server() as server:
        first = await RawPeer.sign_on(server.port, "alice", PASSWORDS["alice"], multi_conn=None)
        await server.wait_online("alice")
        second = await RawPeer.sign_on(server.port, "alice", PASSWORDS["alice"])
        frames = first.frames
        complete: list[Frame] = []
        async with asyncio.timeout(WAIT):  # the whole stream, up to the server's close
            while chunk := await first.reader.read(65536):
                complete += frames.feed(chunk)
        assert all(frame.channel != Channel.SIGNOFF for frame in complete)
        (signoff,) = frames.feed_eof()  # only the length-less form is left over at EOF
        assert (signoff.channel, signoff.payload) == (Channel.SIGNOFF, b"")
        await first.close()
        await second.close()


async def test_waits_and_hooks_fail_clearly() -> None:
    async with running_server() as server:
        with pytest.raises(TimeoutError, match="alice online"):
            await server.wait_online("alice", timeout=0.05)
        with pytest.raises(LookupError, match="carol"):
            await server.drop_session("carol")
        with pytest.raises(LookupError):
            server.stall("carol")
        with pytest.raises(ValueError):
            server.add_account("", "pw")


async def test_command_line_runs_the_server_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aimbot.devserver",
        "--port",
        "0",
        "--user",
        "alice:cli-secret-1",
        "--bot",
        "bot:cli-secret-2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        assert "alice" in line and "bot (bot)" in line and "rate limits on" in line
        assert "cli-secret" not in line
        client = OscarClient("alice", "cli-secret-1", HOST, int(match.group(1)))
        await client.connect()
        assert client.online
        await client.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await process.wait()
    stderr = (await process.stderr.read()).decode()
    assert code == 0, stderr
    assert "cli-secret" not in stderr


async def test_command_line_rejects_a_malformed_account() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aimbot.devserver",
        "--user",
        "no-password-here",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    async with asyncio.timeout(20):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"SCREENNAME:PASSWORD" in stderr


def test_dify_subcommand_is_delegated_to_the_stand_in(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code: object = devserver_main(["dify", "--help"])
    except SystemExit as e:  # argparse may exit, or the stand-in may return the code
        code = e.code
    assert code == 0
    assert "python -m aimbot.devserver dify" in capsys.readouterr().out


async def test_a_client_that_stops_reading_is_cut_off_at_the_outbound_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with session_pool(enforce_rate_limits=False, max_outbound_bytes=64 * 1024) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        deaf = await RawPeer.sign_on(pool.server.port, "bobsmith", PASSWORDS["bobsmith"])
        await pool.server.wait_online("bobsmith")
        offline = asyncio.create_task(pool.server.wait_offline("bobsmith", WAIT))
        text = "z" * 7000
        sent = 0
        while not offline.done() and sent < 5000:  # the kernel buffers a few MB first
            await alice.client.send_im("bobsmith", text)
            sent += 1
        await offline
        assert "stopped reading (outbound buffer full)" in caplog.text
        assert alice.client.online
        await deaf.close()


async def test_a_user_who_lists_the_bot_sees_it_come_and_go_with_its_profile() -> None:
    async with session_pool() as pool:
        pool.server.add_account("helperbot", "bot-pw-1", is_bot=True)
        user, _ = await purple_sign_on(HOST, pool.server.port, "alice", PASSWORDS["alice"])
        try:
            buddy = feedbag_item("helperbot", 1, 3, FEEDBAG_BUDDY)
            assert await user.request(0x13, 0x08, buddy)
            bot = await pool.sign_on("helperbot", "bot-pw-1")
            arrived = BuddyArrived.decode((await user.wait_for((0x03, 0x0B))).body).user
            assert arrived.screen_name == "helperbot"
            flags = arrived.tlvs.get_int(0x0001) or 0
            assert flags & 0x0400 and not flags & 0x0020  # a bot, not away
            info = await user.request(0x02, 0x05, user_info_query("helperbot", 0x0003))
            assert LocateUserInfoReply.decode(info[0].body).user.screen_name == "helperbot"
            await bot.client.close()
            departed = BuddyDeparted.decode((await user.wait_for((0x03, 0x0C))).body).user
            assert departed.screen_name == "helperbot"
            # Back again: the list was kept, so the arrival comes without asking.
            await pool.sign_on("helperbot", "bot-pw-1")
            again = BuddyArrived.decode((await user.wait_for((0x03, 0x0B))).body).user
            assert again.screen_name == "helperbot"
        finally:
            await user.close()


async def test_a_profile_set_by_02_04_is_what_02_05_shows() -> None:
    async with running_server() as server:
        bot, _ = await purple_sign_on(
            HOST, server.port, "carol", PASSWORDS["carol"], profile="I answer; type help"
        )
        user, _ = await purple_sign_on(HOST, server.port, "alice", PASSWORDS["alice"])
        try:
            info = await user.request(0x02, 0x15, pack_u32(0x0001) + pack_str8(b"carol"))
            reply = LocateUserInfoReply.decode(info[0].body)
            assert reply.tlvs.get(0x0002) == b"I answer; type help"
            away = TlvBlock.of((0x0003, b"text/plain"), (0x0004, b"back soon")).encode()
            assert await bot.request(0x02, 0x04, away) == []
            info = await user.request(0x02, 0x05, user_info_query("carol", 0x0002))
            reply = LocateUserInfoReply.decode(info[0].body)
            assert reply.tlvs.get(0x0004) == b"back soon" and not reply.tlvs.has(0x0002)
            assert (reply.user.tlvs.get_int(0x0001) or 0) & 0x0020
        finally:
            await bot.close()
            await user.close()
