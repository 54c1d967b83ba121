"""Cutting an answer into IMs while it is still arriving (progressive delivery).

A part may go out only once no text that follows can change it. The block parser (_blocks)
reads lines, and the only state it carries across a blank line is an open code fence and the
nesting of a list; inline Markdown never crosses a block. So the Markdown received so far is cut
only where a new block starts that the parser would start anyway:

* after a blank line outside a code fence (unless a list is open and the next line could be a
  nested item: then that line must have arrived);
* before a complete heading, fence or unindented list item line (no "|", which could continue a
  table; no setext underline);
* inside a long code fence, before any complete code line: the next part reopens the fence.

A reasoning model's thinking (see strip_reasoning) is held back until it closes and then
dropped, and line breaks are normalised as they arrive, so every part is cut from the text the
whole-answer pipeline would have seen.

A part is sent when it is worth an IM by the packer's own rule (it ends a part at a paragraph
break only in the second half of the room): the longest cut that fits one IM is taken once it
fills half of one; a block too long for one IM is split whole, as the packer would.

What that costs is paid as the text arrives, on the event loop, so it must stay close to linear:
each complete line is scanned for cuts once, and rendering a prefix to see whether it fits is
done once per new cut, not for every cut on every line (docs/benchmarks.md, "Session 15": a
long table took 10 s, a nested list of 8,000 characters 8 s at MAX_REPLY_BYTES=8000).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from aimbot.bot.text._blocks import _ATX_HEADING, _BULLET, _ORDERED, _SETEXT, _fence_closing
from aimbot.bot.text._cleanup import _LINE_BREAKS, _REASONING

logger = logging.getLogger(__name__)

_OPENINGS = ("<think>", "<details")


class _LineBreaks:
    """CRLF, CR and Unicode line separators as "\\n", even when a CRLF is split by a chunk."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, text: str) -> str:
        if not self._cr and "\r" not in text and text.isascii():
            return text  # the usual chunk: nothing to do
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            text = text[:-1]
            self._cr = True
        return _LINE_BREAKS.sub("\n", text)

    def flush(self) -> str:
        cr, self._cr = self._cr, False
        return "\n" if cr else ""


class _Reasoning:
    """Drops thinking blocks from a stream: text that may start one waits until it closes.

    A model may think for thousands of characters: while a block is open, only the new text
    (and the end of the held one, for a closing tag cut in two) is searched for its closing tag,
    and the held text is joined once, when it closes.
    """

    def __init__(self) -> None:
        self._held: list[str] = []
        self._closing = ""  # the closing tag an open block waits for
        self._tail = ""  # the held text's last characters, lowercased, while it waits

    def feed(self, text: str) -> str:
        if self._closing:
            window = self._tail + text.lower()
            if self._closing not in window:
                self._held.append(text)
                self._tail = window[1 - len(self._closing) :]
                return ""
        elif not self._held and "<" not in text:
            return text  # the usual chunk: nothing to do
        text = "".join([*self._held, text])
        self._held, self._closing, self._tail = [], "", ""
        out: list[str] = []
        lower = text.lower()
        pos = 0
        while True:
            lt = text.find("<", pos)
            if lt < 0:
                out.append(text[pos:])
                break
            out.append(text[pos:lt])
            tail = lower[lt : lt + 8]
            if lt + len(tail) == len(text) and any(
                len(tail) < len(opening) and opening.startswith(tail) for opening in _OPENINGS
            ):
                self._held = [text[lt:]]  # "<thi" at the end: wait for the rest
                break
            if tail.startswith("<think>"):
                if lower.find("</think>", lt) < 0:
                    self._hold(text[lt:], "</think>")
                    break
                found = _REASONING.match(text, lt)
                assert found is not None  # "<think>" always starts a match
                pos = found.end()
                continue
            if tail.startswith("<details"):
                found = _REASONING.match(text, lt)
                if found is not None:
                    pos = found.end()
                    continue
                if lower.find("</details>", lt) < 0:
                    self._hold(text[lt:], "</details>")
                    break
            out.append("<")
            pos = lt + 1
        return "".join(out)

    def _hold(self, block: str, closing: str) -> None:
        """Keep an open block until `closing` arrives."""
        self._held, self._closing = [block], closing
        self._tail = block[1 - len(closing) :].lower()

    def flush(self) -> str:
        held = "".join(self._held)
        self._held, self._closing, self._tail = [], "", ""
        return _REASONING.sub("", held)


def _item(line: str) -> bool:
    return bool(_BULLET.match(line) or _ORDERED.match(line))


def _opens_block(line: str) -> bool:
    """A line that starts its own block whatever came before it (see the module docstring)."""
    if "|" in line or _SETEXT.match(line):
        return False
    if _ATX_HEADING.match(line) or (_fence_closing(line) is not None and line[0] != " "):
        return True
    item = _BULLET.match(line) or _ORDERED.match(line)
    return item is not None and not item["indent"] and bool(item["text"].strip())


class _CutScanner:
    """Where the pending text may be cut (see the module docstring), found as it grows.

    The text only grows between two parts, and a cut depends on nothing after the line it
    starts, so each complete line is looked at once: a long stretch with no cut in it (a
    table, lines without a blank one between them) costs no rescans as it arrives. Only the last,
    incomplete line is looked at again, for the one cut it can allow before it ends.
    """

    def __init__(self) -> None:
        self._cuts: list[tuple[int, str]] = []  # (offset, the fence line the rest must reopen)
        self._pos = 0  # where the line not yet complete starts
        self._partial: list[str] = []  # that line so far, in the pieces it came in
        self._first = ""  # its first character ("" while it has none)
        self._closing: re.Pattern[str] | None = None  # the open fence's closing line
        self._reopen = ""
        self._prev_blank = self._in_list = self._content = False

    def feed(self, text: str) -> None:
        """Take in text that follows what was fed before."""
        start = 0
        while (end := text.find("\n", start)) >= 0:
            line = "".join([*self._partial, text[start:end]])
            self._partial, self._first = [], ""
            self._line(line)
            self._pos += len(line) + 1
            start = end + 1
        if start < len(text):
            if not self._partial:
                self._first = text[start]
            self._partial.append(text[start:])

    def cuts(self) -> list[tuple[int, str]]:
        """The cuts of the text fed so far, ascending; never at 0, since a cut needs text
        before it (every cut waits for `_content`)."""
        if (
            self._closing is None
            and self._content
            and self._prev_blank
            and (not self._in_list or self._first not in ("", " "))
        ):
            return [*self._cuts, (self._pos, "")]  # the line must show it is no nested item
        return self._cuts

    def _line(self, line: str) -> None:
        """Take in one complete line starting at self._pos."""
        pos = self._pos
        if self._closing is not None:
            if self._closing.match(line):
                self._closing, self._reopen = None, ""
            elif self._content:
                self._cuts.append((pos, self._reopen))
            self._content = self._content or bool(line.strip())
            self._prev_blank = self._in_list = False
            return
        blank = not line.strip()
        if self._content and not blank:
            if self._prev_blank:
                # An open list: the next line must show it is no nested item.
                if not self._in_list or line[:1] not in ("", " ") or not _item(line):
                    self._cuts.append((pos, ""))
            elif _opens_block(line):
                self._cuts.append((pos, ""))
        if blank:
            self._prev_blank = True
            return
        fence = _fence_closing(line)
        if fence is not None:
            self._closing, self._reopen = fence, line
            self._in_list = False
        else:
            if _item(line):
                self._in_list = True
            elif self._prev_blank or _ATX_HEADING.match(line):
                self._in_list = False
            self._content = True
        self._prev_blank = False


class PartStream:
    """An answer's parts, numbered "(n/...) " as they become final; see the module docstring.

    "(n/...)" because the count is not known yet: it reads as "part n of more to come" and
    keeps today's "(1/3)" form, ASCII only (one "…" would make the IM UCS-2, twice the bytes).
    The parts left at the end get the real count ("(4/4)"). At most `max_parts` - 1 parts are
    sent early: the last one is kept for the end, where a note may have to join it.
    """

    def __init__(
        self,
        split: Callable[[str, str], list[str]],
        size: Callable[[str], int],
        max_bytes: int,
        max_parts: int,
    ) -> None:
        self._split = split  # (markdown, reserve) -> bodies that fit behind the reserve
        self._size = size  # bytes of a part as sent
        self._max_bytes = max_bytes
        self._max_parts = max_parts
        self.reserve = f"({'9' * len(str(max_parts))}/...) "
        self.emitted = 0
        self._received: list[str] = []
        self._breaks = _LineBreaks()
        self._reasoning = _Reasoning()
        self._pending: list[str] = []  # the Markdown not sent yet, in pieces (joined when read)
        self._restart()

    def _restart(self) -> None:
        """Forget what was learnt about the pending text: it no longer just grew."""
        self._scanner = _CutScanner()
        self._scanner.feed(self._text())
        # Sizes grow with the text, so a cut past one that fits is tried only once: the
        # longest cut known to be one part (-1: none), and the first known not to be.
        self._fit: tuple[int, list[str]] = (-1, [])
        self._over: tuple[int, list[str]] | None = None

    def feed(self, chunk: str, *, replaces: bool = False) -> list[str]:
        """The parts that `chunk` completed. `replaces`: the chunk is all the text so far
        (Dify's moderation, an agent's closing message, a new attempt)."""
        if replaces:
            received = "".join(self._received)
            if chunk.startswith(received):
                chunk = chunk[len(received) :]
            else:
                if self.emitted:
                    logger.info("the answer was replaced after %d parts were sent", self.emitted)
                self._received = []
                self._breaks = _LineBreaks()
                self._reasoning = _Reasoning()
                self._pending = []
                self._restart()
        if not chunk:
            return []
        self._received.append(chunk)
        text = self._reasoning.feed(self._breaks.feed(chunk))
        if not text:
            return []
        self._pending.append(text)
        self._scanner.feed(text)
        if "\n" not in text:
            return []  # every cut is at the start of a line
        return self._emit()

    def rest(self) -> str:
        """At the end of the answer: the Markdown not sent yet."""
        self._pending.append(self._reasoning.feed(self._breaks.flush()) + self._reasoning.flush())
        rest = self._text()
        self._pending = []
        self._restart()
        return rest

    def number(self, bodies: list[str]) -> list[str]:
        """The last parts, numbered with the real count."""
        total = self.emitted + len(bodies)
        return [f"({self.emitted + n}/{total}) {body}" for n, body in enumerate(bodies, 1)]

    def _emit(self) -> list[str]:
        parts: list[str] = []
        while self.emitted < self._max_parts - 1:
            cuts = self._scanner.cuts()
            if not cuts:
                break
            low = self._fit[0] + 1
            high = len(cuts) - 1 if self._over is None else self._over[0] - 1
            while low <= high:  # the longest cut that is one part, among the new ones
                middle = (low + high) // 2
                bodies = self._split(self._text()[: cuts[middle][0]], self.reserve)
                if len(bodies) <= 1:
                    self._fit = (middle, bodies)
                    low = middle + 1
                else:
                    self._over = (middle, bodies)
                    high = middle - 1
            index, bodies = self._fit
            if bodies and 2 * self._size(self.reserve + bodies[0]) >= self._max_bytes:
                parts.extend(self._take(cuts[index], bodies))
                continue
            over = index + 1
            if over >= len(cuts):
                break
            if self._over is None:  # else the search left it right after the fit, at `over`
                self._over = (over, self._split(self._text()[: cuts[over][0]], self.reserve))
            bodies = self._over[1]
            if self.emitted + len(bodies) > self._max_parts - 1:
                break
            parts.extend(self._take(cuts[over], bodies))
        return parts

    def _text(self) -> str:
        """The pending text as one string (kept joined until more arrives)."""
        if len(self._pending) > 1:
            self._pending = ["".join(self._pending)]
        return self._pending[0] if self._pending else ""

    def _take(self, cut: tuple[int, str], bodies: list[str]) -> list[str]:
        offset, reopen = cut
        rest = self._text()[offset:]
        self._pending = [f"{reopen}\n{rest}" if reopen else rest]
        self._restart()
        parts = [f"({self.emitted + n}/...) {body}" for n, body in enumerate(bodies, 1)]
        self.emitted += len(bodies)
        return parts
