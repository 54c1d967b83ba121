"""Issue 13, items 2 and 6: a Dify that answers without end, or breaks off mid-answer.

The whole bot runs (devserver OSCAR, the real Application, a person at an AIM client); Dify is
the hostile server of tests/helpers/hostile_dify.py on a real loopback socket.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from aimbot.api.dify_client import MAX_JSON_BODY_BYTES, DifyClient, DifyOptions
from aimbot.api.errors import DifyProtocolError, DifyUnavailable
from aimbot.bot import messages
from tests.helpers.e2e import rig
from tests.helpers.hostile_dify import TASK_ID, HostileDify, hostile_dify

MIB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_a_50_mb_answer_is_read_only_to_the_cap_stopped_and_sent_in_few_parts(
    tmp_path: Path,
) -> None:
    async with hostile_dify(answer_bytes=50 * MIB) as dify, rig(tmp_path) as r:
        await r.start_bot(DIFY_API_URL=dify.url)
        gus = await r.person("gus")
        rss_before = rss_bytes()
        await gus.say("tell me everything")
        first = await gus.reply()
        match = re.match(r"\(1/(\d+)\) ", first.text)
        total = int(match.group(1)) if match else 1
        parts = [first, *await gus.replies(total - 1)]
        await r.quiescent()
        assert gus.received.empty()
        assert total <= 10  # MAX_REPLY_PARTS
        assert parts[-1].text.rstrip().endswith(messages.ANSWER_CUT_SHORT)
        # The bot stopped reading: far less than the 50 MB was ever accepted from the socket
        # (what it read, plus what the kernel buffers held when it hung up).
        assert dify.finished == 0
        assert dify.written < 16 * MIB, dify.written
        assert rss_bytes() - rss_before < 200 * MIB
        # ... and told Dify to stop generating, as the user it asked for.
        assert dify.stops == [(TASK_ID, "aim:gus")]
        assert dify.chat_turns == 1


async def one_question(tmp_path: Path, dify: HostileDify, name: str) -> str:
    """A person asks the bot (Dify: the hostile one) once; the one reply they get."""
    async with rig(tmp_path) as r:
        await r.start_bot(DIFY_API_URL=dify.url)
        who = await r.person(name)
        await who.say("a question")
        reply = await who.reply()
        await r.quiescent()
        assert who.received.empty()
    assert dify.chat_turns == 1  # one Dify turn: the conversation holds one answer
    return reply.text


async def test_a_stream_broken_after_text_is_answered_with_that_text_and_not_asked_again(
    tmp_path: Path,
) -> None:
    async with hostile_dify(chunk_chars=100, break_after=300) as dify:
        reply = await one_question(tmp_path, dify, "hal")
        assert reply.startswith("x" * 200)
        assert reply.rstrip().endswith(messages.ANSWER_INTERRUPTED)
        assert dify.stops == [(TASK_ID, "aim:hal")]


async def test_a_stream_broken_after_only_blank_text_gets_one_friendly_error(
    tmp_path: Path,
) -> None:
    async with hostile_dify(chunk_chars=50, chunk_text=" ", break_after=300) as dify:
        reply = await one_question(tmp_path, dify, "ida")
        assert reply == messages.for_error(DifyUnavailable("x"))


async def test_a_50_mb_blocking_answer_is_refused_after_a_bounded_read() -> None:
    async with hostile_dify(answer_bytes=50 * MIB) as dify, aiohttp.ClientSession() as session:
        client = DifyClient(
            session,
            "app-hostile-0123456789",
            DifyOptions(base_url=dify.url, response_mode="blocking"),
        )
        with pytest.raises(DifyProtocolError, match="larger than"):
            await client.chat("aim:kim", "hi", None)
        assert dify.finished == 0
        assert dify.written < MAX_JSON_BODY_BYTES + 16 * MIB, dify.written
        assert dify.chat_turns == 1  # a protocol error is not asked again
