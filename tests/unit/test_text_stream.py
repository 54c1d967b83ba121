"""Cutting a streamed answer into IMs as it arrives (issue 15, item 2)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aimbot.bot.text import (
    PartStream,
    ReplyFormat,
    part_stream,
    split_bodies,
    split_reply,
    strip_reasoning,
)
from aimbot.bot.text._stream import _CutScanner, _Reasoning
from tests.unit.test_text import as_sent, im_size, plain_escape

_NUMBER = re.compile(r"^\((\d+)/(\d+|\.\.\.)\) ")

_WORDS = st.sampled_from(
    ["alpha", "beta", "**bold**", "*it*", "`code`", "**open", "x|y", "wörd", "<b>", "&", "-", "_a_"]
)
_LINE_KINDS = st.sampled_from(
    [
        "",
        "",
        "# ",
        "- ",
        "  - ",
        "1. ",
        "> ",
        "```",
        "```py",
        "~~~",
        "---",
        "| a | b |",
        "|---|---|",
    ]
)


@st.composite
def _answers(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 20))):
        kind = draw(_LINE_KINDS)
        words = " ".join(draw(st.lists(_WORDS, max_size=25)))
        lines.append(kind + words if kind not in ("```", "```py", "~~~", "---", "") else kind)
    separator = draw(st.sampled_from(["\n", "\r\n"]))
    text = separator.join(lines)
    if draw(st.booleans()):
        text = "<think>pondering\n\nmore</think>" + text
    return text


def _chunks(draw: Callable[[st.SearchStrategy[list[int]]], list[int]], text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=40)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _content(parts: list[str]) -> str:
    """The characters shown, without numbering and whitespace (cuts move line breaks)."""
    return "".join("".join(_NUMBER.sub("", part).split()) for part in parts)


def _stream(
    chunks: list[str], fmt: ReplyFormat, max_bytes: int, max_parts: int
) -> tuple[list[str], list[str]]:
    stream = part_stream(fmt, max_bytes, im_size, max_parts, plain_escape)
    early: list[str] = []
    for chunk in chunks:
        early.extend(stream.feed(chunk))
    rest = split_bodies(stream.rest(), fmt, max_bytes, im_size, stream.reserve, plain_escape)
    return early, stream.number(rest)


# Each example streams and splits a whole answer many times: a thousand is plenty, and keeps the
# CI profile's run within the test timeout.
_EXAMPLES = hypothesis_settings(max_examples=min(hypothesis_settings().max_examples, 1000))


@_EXAMPLES
@given(data=st.data(), max_bytes=st.integers(64, 600))
@example(data=None, max_bytes=100)
def test_streamed_parts_show_what_the_whole_answer_shows_and_fit(
    data: st.DataObject | None, max_bytes: int
) -> None:
    if data is None:
        text, chunks = (
            "para one\n\n```\ncode\n\nmore\n```\n\nlast",
            ["para one\n\n```\nco", "de\n\nmore\n```\n\nlast"],
        )
    else:
        text = data.draw(_answers())
        chunks = _chunks(data.draw, text)
    early, late = _stream(chunks, "plain", max_bytes, 100)
    whole = split_reply(strip_reasoning(text), "plain", max_bytes, im_size, plain_escape)
    assert _content(early + late) == _content(whole)
    for part in early + late:
        assert im_size(as_sent(part, "plain")) <= max_bytes


@_EXAMPLES
@given(data=st.data(), max_bytes=st.integers(64, 600), max_parts=st.integers(1, 5))
def test_html_parts_fit_and_are_numbered_in_order(
    data: st.DataObject, max_bytes: int, max_parts: int
) -> None:
    text = data.draw(_answers())
    early, late = _stream(_chunks(data.draw, text), "html", max_bytes, max_parts)
    assert len(early) <= max_parts - 1  # the last part is kept for the end
    for number, part in enumerate(early + late, 1):
        assert im_size(part) <= max_bytes
        found = _NUMBER.match(part)
        assert found is not None and int(found[1]) == number
        assert found[2] == ("..." if number <= len(early) else str(len(early) + len(late)))


@_EXAMPLES
@given(data=st.data())
def test_cuts_found_as_the_text_grows_are_those_of_the_whole_text(data: st.DataObject) -> None:
    # The scanner looks at each complete line once; what it carries over must be all it needs.
    text = data.draw(_answers()).replace("\r\n", "\n")
    scanner = _CutScanner()
    received = ""
    for chunk in _chunks(data.draw, text):
        scanner.feed(chunk)
        received += chunk
        whole = _CutScanner()
        whole.feed(received)
        assert scanner.cuts() == whole.cuts()


_REASONING_TOKENS = st.sampled_from(
    [
        *("<think>", "</think>", "</THINK>", "<thi", "nk>", "<", ">", "word ", "\n", "é"),
        *("<details open>", "<summary>Thinking</summary>", "</details>"),
    ]
)


@_EXAMPLES
@given(data=st.data())
def test_thinking_is_dropped_the_same_however_the_stream_is_cut(data: st.DataObject) -> None:
    # An open block is searched for its closing tag in new text only: a tag cut in two by the
    # chunks must still close it.
    text = "".join(data.draw(st.lists(_REASONING_TOKENS, max_size=40)))
    whole = _Reasoning()
    expected = (whole.feed(text), whole.flush())
    pieces = _Reasoning()
    shown = "".join(pieces.feed(chunk) for chunk in _chunks(data.draw, text))
    assert (shown, pieces.flush()) == expected  # released as soon as, not only at the end


def test_a_closing_tag_cut_anywhere_by_the_chunks_still_closes_its_block() -> None:
    text = "a <think>long\nthought</THINK> b <details><summary>Thinking</summary>x</details> c"
    for size in range(1, len(text) + 1):
        for start in range(size):  # every way the chunks can fall across the tags
            pieces = [text[:start]] + [text[i : i + size] for i in range(start, len(text), size)]
            stream = _Reasoning()
            shown = "".join(stream.feed(piece) for piece in pieces)
            assert (shown, stream.flush()) == ("a  b  c", ""), (size, start)


def test_a_growing_list_is_split_about_once_per_item_not_once_per_probe() -> None:
    # Each item line is a new cut; the cuts before it are known to fit, so only the new one is
    # tried (a search over all of them would split the text about log2(items) times per line).
    max_bytes = 2000
    splits = 0

    def split(markdown: str, reserve: str) -> list[str]:
        nonlocal splits
        splits += 1
        return split_bodies(markdown, "plain", max_bytes, im_size, reserve, plain_escape)

    stream = PartStream(split, lambda part: im_size(plain_escape(part)), max_bytes, 100)
    items = [f"- item {i} with a few words in it\n" for i in range(400)]
    parts = [part for item in items for part in stream.feed(item)]
    assert len(parts) >= 5
    assert splits <= len(items) + 2 * len(parts)


def _paragraph(word: str) -> str:
    return " ".join([word] * 60)


def test_a_paragraph_goes_out_as_soon_as_the_blank_line_after_it_arrives() -> None:
    stream = part_stream("html", 512, im_size, 10)
    first = _paragraph("alpha")
    assert stream.feed(first) == []  # it may still go on
    parts = stream.feed("\n\n")
    assert len(parts) == 1 and parts[0].startswith("(1/...) alpha")
    assert stream.feed(_paragraph("beta")) == []
    rest = split_bodies(stream.rest(), "html", 512, im_size, stream.reserve)
    assert stream.number(rest) == [f"(2/2) {_paragraph('beta')}"]


def test_short_paragraphs_wait_to_share_an_im() -> None:
    stream = part_stream("html", 512, im_size, 10)
    assert stream.feed("Sure.\n\nHere it is:\n\n") == []  # under half an IM: one IM with more
    assert stream.rest() == "Sure.\n\nHere it is:\n\n"


def test_a_nested_list_item_is_not_cut_from_its_list_before_its_line_arrives() -> None:
    stream = part_stream("html", 128, im_size, 10)
    assert stream.feed(f"- {_paragraph('a')[:100]}\n\n") == []
    assert stream.feed("  - nest") == []  # not yet known whether it nests
    assert stream.feed("ed\n") == []  # it does: cut off, it would lose its nesting
    parts = stream.feed("\nafter the list")
    assert parts and parts[-1].endswith("&nbsp; - nested")  # still nested under its item


def test_a_long_code_block_is_sent_in_parts_that_reopen_the_fence() -> None:
    stream = part_stream("html", 256, im_size, 10)
    parts = stream.feed("```py\n" + "".join(f"line_{n} = {n}\n" for n in range(60)))
    assert len(parts) >= 2
    assert all("<font" in part or "<tt>" in part or "line_" in part for part in parts)
    assert stream.rest().startswith("```py\n")


def test_thinking_is_held_back_and_dropped() -> None:
    stream = part_stream("plain", 128, im_size, 10, plain_escape)
    assert stream.feed("<thi") == []
    assert stream.feed("nk>" + _paragraph("secret") + "\n\n") == []
    parts = stream.feed("</think>" + _paragraph("shown")[:110] + "\n\nnext")
    assert parts and all("secret" not in part for part in parts)
    assert "think" not in "".join(parts) + stream.rest()


def test_a_replacement_that_extends_the_text_sends_nothing_twice() -> None:
    stream = part_stream("html", 512, im_size, 10)
    first = _paragraph("alpha") + "\n\n"
    assert len(stream.feed(first)) == 1
    assert stream.feed(first + "tail", replaces=True) == []
    assert stream.rest() == "tail"
