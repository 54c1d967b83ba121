"""Issue 13 "Must show": whole IM events, whatever they hold, through the bot's intake and reply
rendering. Any sender, any text (huge, odd Unicode, control characters, lone surrogates), either
auto_response flag: the IM is answered or dropped, and nothing crashes.

One bot (real SQLite file, the Dify stand-in over loopback, echoing each query back as its
answer so the odd text is rendered too) serves every example; the HYPOTHESIS_PROFILE decides how
many (the CI profile: 10,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.bot import messages
from aimbot.oscar.imtext import im_text_size
from aimbot.oscar.snacs import normalize_screen_name
from tests.helpers.botrig import BOT, WAIT, BotRig, bot_rig, incoming

MAX_PARTS = 10
LIMIT = 512  # the sink's max_message_bytes


class _Crashes(logging.Handler):
    """Every record that carries a traceback: a worker, task or intake that crashed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.CRITICAL:
            self.records.append(record)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.Runner, BotRig]]:
    path: Path = tmp_path_factory.mktemp("intake")
    with asyncio.Runner() as runner:
        rig_cm = bot_rig(path, reply_format="html", user_rate_limit=0, max_reply_parts=MAX_PARTS)
        rig = runner.run(rig_cm.__aenter__())
        rig.dify.answer = lambda ctx: ctx.query
        try:
            yield runner, rig
        finally:
            runner.run(rig_cm.__aexit__(None, None, None))


@contextlib.contextmanager
def crashes_recorded() -> Iterator[_Crashes]:
    handler = _Crashes()
    root = logging.getLogger("aimbot")
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


odd_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), min_size=1),
    st.text(alphabet=st.characters(categories=["Cs", "Co", "Cn", "Zl", "Zp", "Mn", "So"])),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=20), st.integers(1, 400)),
    st.sampled_from(["clear", "CLEAR", "/help", " help ", "", "   ", "<b>hi</b>", "**x**"]),
)
senders = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["", " ", "  ", "Bob Smith", BOT, BOT.lower(), "x" * 300, "a\nb", "\ud800"]),
)


@given(sender=senders, text=odd_text, auto_response=st.booleans())
def test_any_im_is_answered_or_dropped_and_nothing_crashes(
    live: tuple[asyncio.Runner, BotRig], sender: str, text: str, auto_response: bool
) -> None:
    runner, rig = live
    before = len(rig.sink.items)

    async def drive() -> None:
        await rig.bot.on_message(incoming(sender, text, auto_response=auto_response))
        await rig.bot.wait_idle(WAIT)

    with crashes_recorded() as crashes:
        runner.run(drive())
    assert not crashes.records, [r.getMessage() for r in crashes.records]

    replies = rig.sink.items[before:]
    assert all(item.screen_name == sender for item in replies)
    dropped = (
        auto_response
        or normalize_screen_name(sender) == normalize_screen_name(BOT)
        or "\ud800" in sender
        or not text.strip()
    )
    if dropped:
        assert replies == []
    else:
        assert 1 <= len(replies) <= MAX_PARTS
    for item in replies:
        assert im_text_size(item.text) <= LIMIT


# Small caps for the rendering property, so that each example costs a few ms (the CI profile runs
# 10,000): every answer below is longer than SMALL_CHARS, so every one must end with the note.
SMALL_CHARS, SMALL_PARTS = 700, 2


def _past_the_cap(seed: str) -> str:
    """The seed repeated until it is longer than SMALL_CHARS (cheap to draw, any content)."""
    return seed * (SMALL_CHARS // len(seed) + 1)


huge_answers = st.one_of(
    st.text(min_size=1, max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200),
    st.builds(
        "".join,
        st.lists(
            st.sampled_from(
                ["**b**", "`c`", "- i\n", "# h\n", "[l](http://x.y)", "é", "😀", "\n\n", " "]
            ),
            min_size=1,
            max_size=60,
        ),
    ),
).map(_past_the_cap)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.Runner, BotRig]]:
    path: Path = tmp_path_factory.mktemp("render")
    with asyncio.Runner() as runner:
        rig_cm = bot_rig(
            path, reply_format="html", max_answer_chars=SMALL_CHARS, max_reply_parts=SMALL_PARTS
        )
        rig = runner.run(rig_cm.__aenter__())
        try:
            yield runner, rig
        finally:
            runner.run(rig_cm.__aexit__(None, None, None))


def _joined(parts: list[str]) -> str:
    """The parts' texts without their "(i/n) " numbering, whitespace collapsed."""
    bodies = [re.sub(r"^\(\d+/\d+\) ", "", part) for part in parts]
    return " ".join(" ".join(bodies).split())


@given(answer=huge_answers, note=st.sampled_from([None, messages.ANSWER_INTERRUPTED]))
def test_any_answer_over_the_caps_renders_within_them_ending_with_the_note(
    small: tuple[asyncio.Runner, BotRig], answer: str, note: str | None
) -> None:
    runner, rig = small
    assert len(answer) > SMALL_CHARS
    replies = runner.run(rig.bot._render(answer, note))
    assert 1 <= len(replies) <= SMALL_PARTS
    assert all(im_text_size(reply.text) <= LIMIT for reply in replies)
    assert _joined([r.text for r in replies]).endswith(note or messages.ANSWER_CUT_SHORT)
