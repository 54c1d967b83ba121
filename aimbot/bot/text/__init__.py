"""Dify's Markdown answers as AIM instant messages, cut to the server's IM size limit.

LLM answers arrive as CommonMark-style Markdown of any length, while AIM clients render only a
handful of HTML tags and the server caps one IM at a few hundred *encoded* bytes. Everything here
is pure (no I/O, no clock) so that it can be property-tested:

* the Markdown is parsed into lines of styled runs - our own small model, never HTML from the
  answer, so nothing Dify writes can inject a tag;
* the runs become "atoms" (words, spaces, line breaks), each already rendered as AIM HTML or as
  plain text;
* splitting cuts the atom sequence, not an HTML string: every part opens and closes its own tags,
  so no split lands inside a tag, an entity, a word or a character unless nothing else fits.

The pipeline, one private module a stage: Markdown → clean lines (_cleanup) → blocks (_blocks,
with inline Markdown from _inline) → lines of styled runs (the model and its tags in _markup,
which all stages share) → atoms (_atoms) → rendered and cut parts (_pack). No stage imports a
later one; this module holds only the public API that runs them in order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Final, Literal

from aimbot.bot.text._atoms import _atomize, _AtomOptions
from aimbot.bot.text._blocks import _FENCE, _Block, _fence_closing, _layout, _parse_blocks
from aimbot.bot.text._cleanup import _REASONING, _normalize
from aimbot.bot.text._markup import _html_escape, _Style, _tags
from aimbot.bot.text._pack import _Packer, _render_atoms, _whole
from aimbot.bot.text._stream import PartStream
from aimbot.oscar.imtext import plain_to_html

__all__ = [
    "MIN_MAX_BYTES",
    "PartStream",
    "ReplyFormat",
    "markdown_to_aim_html",
    "markdown_to_plain",
    "part_stream",
    "render_reply",
    "split_bodies",
    "split_reply",
    "strip_reasoning",
    "with_note",
]

logger = logging.getLogger(__name__)

ReplyFormat = Literal["html", "plain"]

MIN_MAX_BYTES: Final = 64
"""Below this a numbered part plus a little formatting may not fit one character."""


def _check_format(fmt: str) -> None:
    if fmt not in ("html", "plain"):
        raise ValueError(f"reply format must be 'html' or 'plain', got {fmt!r}")


def _never_as_text(url: str) -> bool:
    return False


def _always_as_text(url: str) -> bool:
    return True


def _render_blocks(blocks: Sequence[_Block], html: bool) -> str:
    lines = _layout(blocks, _never_as_text if html else _always_as_text)
    atoms = _atomize(lines, _AtomOptions(html=html, escape=plain_to_html))
    return _whole(_render_atoms(atoms, html))


def render_reply(markdown: str, fmt: ReplyFormat) -> str:
    """The whole answer in the chosen reply format, without any size limit."""
    _check_format(fmt)
    return _render_blocks(_parse_blocks(_normalize(markdown)), fmt == "html")


def markdown_to_aim_html(markdown: str) -> str:
    """Markdown as the HTML subset AIM clients render; every tag balanced, all text escaped."""
    return render_reply(markdown, "html")


def markdown_to_plain(markdown: str) -> str:
    """Markdown with its markers removed; NOT escaped (the oscar layer escapes plain text)."""
    return render_reply(markdown, "plain")


def _numbering(digits: int) -> str:
    return f"({'9' * digits}/{'9' * digits}) "


# Text made only of these, with no leading/trailing space and no list marker, has no Markdown
# in it: the pipeline's output is the text itself (HTML-escaped for "html").
_PROSE = re.compile(r"[A-Za-z0-9 ,.;:!?'\"()%$=/-]+")
_LIST_MARKER = re.compile(r"\d+[.)] ")


def _is_plain_prose(text: str) -> bool:
    return (
        _PROSE.fullmatch(text) is not None
        and text[0] not in " -"  # a leading "-" starts a list item or a rule
        and text[-1] != " "
        and "://" not in text  # a bare URL becomes a link
        and _LIST_MARKER.match(text) is None
    )


def split_reply(
    markdown: str,
    fmt: ReplyFormat,
    max_bytes: int,
    measure: Callable[[str], int],
    escape: Callable[[str], str] = plain_to_html,
) -> list[str]:
    """The answer as IM texts that each fit `max_bytes` as sent, numbered "(i/n) " if several.

    `measure` gives the encoded size of a text as sent; plain parts are measured after `escape`
    (the oscar layer's plain_to_html), because that is what goes on the wire. An empty answer
    gives [] so that the caller can send its own fallback.
    """
    _check_format(fmt)
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
    html = fmt == "html"
    if _is_plain_prose(markdown):
        # Most answers are a sentence or two of plain prose: skip the Markdown pipeline, which
        # would give the same text (a test holds the two to that) at ten times the cost.
        part = _html_escape(markdown) if html else markdown
        if measure(part if html else escape(part)) <= max_bytes:
            return [part]
    return _split_markdown(markdown, html, max_bytes, measure, escape)


def split_bodies(
    markdown: str,
    fmt: ReplyFormat,
    max_bytes: int,
    measure: Callable[[str], int],
    reserve: str,
    escape: Callable[[str], str] = plain_to_html,
) -> list[str]:
    """Like split_reply, but unnumbered: each body fits `max_bytes` behind a prefix as wide as
    `reserve`, which the caller adds (a streamed answer numbers parts before knowing their
    count). [] for an empty answer."""
    _check_format(fmt)
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
    return _split_markdown(markdown, fmt == "html", max_bytes, measure, escape, reserve)


def _split_markdown(
    markdown: str,
    html: bool,
    max_bytes: int,
    measure: Callable[[str], int],
    escape: Callable[[str], str],
    reserve: str | None = None,
) -> list[str]:
    """split_reply's full pipeline: parse, lay out, cut into parts, number them (or, with a
    `reserve`, leave room for the caller's prefix on every part)."""
    blocks = _parse_blocks(_normalize(markdown))

    # Each part re-opens its formatting, so formatting that cannot fit beside a numbering
    # prefix and a character (tiny limits, UCS-2 text) is dropped rather than cut to pieces.
    budget = max_bytes // 2
    probe = "\u00e9"  # tags cost twice as much once the message is UCS-2
    dropped: set[str] = set()

    @lru_cache(maxsize=64)
    def style_of(style: _Style) -> _Style:
        plainer = replace(style, mono=False)
        plainest = replace(plainer, italic=False)
        for candidate in (style, plainer, plainest, replace(plainest, bold=False)):
            tags = _tags(candidate)
            opening = "".join(tag[0] for tag in tags)
            closing = "".join(tag[1] for tag in tags)
            if measure(opening + closing + probe) <= budget:
                break
            dropped.add("formatting")
        return candidate

    def link_as_text(url: str) -> bool:
        if not html:
            return True
        if measure(f'<a href="{_html_escape(url)}"></a>{probe}') <= budget:
            return False
        dropped.add("link")
        return True

    def too_long(sent: str) -> bool:
        # measure() is at most 4 bytes per character: skip measuring words that surely fit.
        return 16 * len(sent) > max_bytes and measure(sent) > max_bytes // 4

    lines = _layout(blocks, link_as_text)
    options = _AtomOptions(html=html, escape=escape, style_of=style_of, too_long=too_long)
    rendered = _render_atoms(_atomize(lines, options), html)
    # Cutting long words into characters changes no text, so unless formatting had to go, the
    # whole reply is already rendered.
    whole = _render_blocks(blocks, html) if dropped else _whole(rendered)
    if not whole:
        return []
    whole_size = measure((reserve or "") + whole if html else escape((reserve or "") + whole))
    if whole_size <= max_bytes:
        return [whole]
    if dropped:
        logger.debug("Reply limit of %d bytes is too small for some %s", max_bytes, dropped)

    packer = _Packer(rendered, html, max_bytes, measure, escape)
    if reserve is not None:
        return packer.pack(reserve)
    digits = len(str(whole_size // max_bytes + 1))
    while True:
        bodies = packer.pack(_numbering(digits))
        count = len(bodies)
        if len(str(count)) <= digits:
            break
        digits = len(str(count))
    if count == 1:
        return bodies
    parts = [f"({number}/{count}) {body}" for number, body in enumerate(bodies, 1)]
    for part in parts:
        if measure(part if html else escape(part)) > max_bytes:
            raise ValueError("measure() is not monotonic: a reply part grew past max_bytes")
    logger.debug(
        "Split a %d-character reply into %d parts of at most %d bytes",
        len(markdown),
        count,
        max_bytes,
    )
    return parts


def part_stream(
    fmt: ReplyFormat,
    max_bytes: int,
    measure: Callable[[str], int],
    max_parts: int,
    escape: Callable[[str], str] = plain_to_html,
) -> PartStream:
    """A PartStream that cuts by split_reply's rules (see _stream for when a part is final)."""
    _check_format(fmt)
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
    html = fmt == "html"

    def split(markdown: str, reserve: str) -> list[str]:
        return _split_markdown(markdown, html, max_bytes, measure, escape, reserve)

    def size(part: str) -> int:
        return measure(part if html else escape(part))

    return PartStream(split, size, max_bytes, max_parts)


def with_note(markdown: str, note: str) -> str:
    """The answer with a note of ours as its last paragraph, never inside a code block.

    An answer cut at a size cap (or broken off) may end inside a fenced code block; the note
    would then be shown as code, or vanish into it. The open fence is closed first, by the same
    rules the block parser uses.
    """
    lines = _normalize(markdown)
    fence: str | None = None
    closing: re.Pattern[str] | None = None
    for line in lines:
        if closing is None:
            closing = _fence_closing(line)
            if closing is not None:
                opening = _FENCE.match(line)
                assert opening is not None
                fence = opening["fence"]
        elif closing.match(line):
            fence, closing = None, None
    body = "\n".join(lines).rstrip()
    if fence is not None:
        body = f"{body}\n{fence}"
    return f"{body}\n\n{note}" if body else note


def strip_reasoning(answer: str) -> str:
    """Drop a reasoning model's thinking (<think>…</think>, Dify's "Thinking…" details block).

    It is the model's scratch work, not the answer; an unterminated <think> swallows the rest.
    """
    return _REASONING.sub("", answer).strip()
