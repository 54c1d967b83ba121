"""Rendering and cutting atom sequences into parts that fit the IM size limit.

All atoms are rendered once, so that any part is a slice of one string plus the tags it must
reopen and close; packing then only measures slices. It knows nothing of Markdown or of word
and character boundaries, only sizes and break levels, which keeps the size arithmetic in one
place.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aimbot.bot.text._atoms import _BREAK_LEVELS, _WORD, _Atom
from aimbot.bot.text._markup import _html_escape, _Tag


@dataclass(frozen=True, slots=True)
class _Rendered:
    """All atoms rendered once, so that any slice of them is a string slice plus its tags."""

    atoms: tuple[_Atom, ...]
    out: str
    sent: str
    out_start: tuple[int, ...]
    out_end: tuple[int, ...]
    sent_start: tuple[int, ...]
    sent_end: tuple[int, ...]
    opens: tuple[str, ...]  # tags to open before atom k when a part starts there
    closes: tuple[str, ...]  # tags to close after atom k when a part ends there
    breaks: dict[int, list[int]]  # atom positions by break level
    any_break: list[int]

    def out_piece(self, start: int, end: int) -> str:
        body = self.out[self.out_start[start] : self.out_end[end - 1]]
        return self.opens[start] + body + self.closes[end - 1]

    def sent_piece(self, start: int, end: int) -> str:
        body = self.sent[self.sent_start[start] : self.sent_end[end - 1]]
        return self.opens[start] + body + self.closes[end - 1]

    def first(self, position: int) -> int:
        """The first atom a part starting at `position` shows (leading whitespace dropped)."""
        atoms = self.atoms
        while position < len(atoms) and atoms[position].space:
            if atoms[position].indent and (position == 0 or atoms[position - 1].newline):
                break  # indentation at the start of a code line is content
            position += 1
        return position

    def last(self, start: int, end: int) -> int:
        """The end of a part [start, end) with trailing whitespace dropped."""
        while end > start and self.atoms[end - 1].space:
            end -= 1
        return end


def _shared(first: tuple[_Tag, ...], second: tuple[_Tag, ...]) -> int:
    count = 0
    limit = min(len(first), len(second))
    while count < limit and first[count] == second[count]:
        count += 1
    return count


def _render_atoms(atoms: Sequence[_Atom], html: bool) -> _Rendered:
    count = len(atoms)
    upcoming: list[tuple[_Tag, ...]] = [()] * count
    following: tuple[_Tag, ...] = ()
    for index in range(count - 1, -1, -1):
        upcoming[index] = following
        tags = atoms[index].tags
        if tags is not None:
            following = tags

    tag_strings: dict[tuple[_Tag, ...], tuple[str, str]] = {(): ("", "")}

    def strings(tags: tuple[_Tag, ...]) -> tuple[str, str]:
        found = tag_strings.get(tags)
        if found is None:
            opening = "".join(tag[0] for tag in tags)
            closing = "".join(tag[1] for tag in reversed(tags))
            found = tag_strings[tags] = (opening, closing)
        return found

    out_parts: list[str] = []
    sent_parts: list[str] = []
    out_start: list[int] = []
    out_end: list[int] = []
    sent_start: list[int] = []
    sent_end: list[int] = []
    opens: list[str] = []
    closes: list[str] = []
    breaks: dict[int, list[int]] = {level: [] for level in _BREAK_LEVELS}
    any_break: list[int] = []
    out_pos = sent_pos = 0
    current: tuple[_Tag, ...] = ()
    opening = closing = ""
    for index, atom in enumerate(atoms):
        target = atom.tags
        if target is None:  # a line break keeps open only what the next line continues
            target = current[: _shared(current, upcoming[index])]
        if target is current or target == current:
            transition = ""
        else:
            shared = _shared(current, target)
            transition = strings(current[shared:])[1] + strings(target[shared:])[0]
            opening, closing = strings(target)
            current = target
        out_pos += len(transition)
        out_start.append(out_pos)
        out_pos += len(atom.out)
        out_end.append(out_pos)
        out_parts.append(transition)
        out_parts.append(atom.out)
        if not html:
            sent_pos += len(transition)
            sent_start.append(sent_pos)
            sent_pos += len(atom.sent)
            sent_end.append(sent_pos)
            sent_parts.append(transition)
            sent_parts.append(atom.sent)
        opens.append(opening)
        closes.append(closing)
        if atom.level >= _WORD:
            breaks[atom.level].append(index)
            any_break.append(index)
    out = "".join(out_parts)
    return _Rendered(
        tuple(atoms),
        out,
        "".join(sent_parts) if not html else out,
        tuple(out_start),
        tuple(out_end),
        tuple(sent_start) if not html else tuple(out_start),
        tuple(sent_end) if not html else tuple(out_end),
        tuple(opens),
        tuple(closes),
        breaks,
        any_break,
    )


def _whole(rendered: _Rendered) -> str:
    start = rendered.first(0)
    end = rendered.last(start, len(rendered.atoms))
    return rendered.out_piece(start, end) if end > start else ""


def _choose_break(rendered: _Rendered, start: int, limit: int) -> int:
    """Where to end a part that may hold atoms [start, limit): the best kind of boundary in the
    second half of that room (a paragraph break right after the first word would waste an IM,
    and IMs are rate-limited), else any word boundary, else cut right at the limit."""
    threshold = (
        rendered.sent_start[start]
        + (rendered.sent_end[limit - 1] - rendered.sent_start[start]) // 2
    )
    earliest = max(
        start + 1, bisect.bisect_left(rendered.sent_start, threshold, start + 1, limit + 1)
    )
    for level in _BREAK_LEVELS:
        positions = rendered.breaks[level]
        index = bisect.bisect_right(positions, limit) - 1
        if index >= 0 and positions[index] >= earliest:
            return positions[index]
    index = bisect.bisect_right(rendered.any_break, limit) - 1
    if index >= 0 and rendered.any_break[index] > start:
        return rendered.any_break[index]
    return limit


@dataclass(frozen=True, slots=True)
class _Packer:
    rendered: _Rendered
    html: bool
    max_bytes: int
    measure: Callable[[str], int]
    escape: Callable[[str], str]

    def fits(self, prefix: str, start: int, end: int) -> bool:
        return self.measure(prefix + self.rendered.sent_piece(start, end)) <= self.max_bytes

    def pack(self, prefix: str) -> list[str]:
        """Part bodies such that `prefix` + body fits; `prefix` is the widest numbering."""
        rendered = self.rendered
        sent_prefix = prefix if self.html else self.escape(prefix)
        end = len(rendered.atoms)
        parts: list[str] = []
        start = rendered.first(0)
        while start < end:
            stop = rendered.last(start, end)
            if stop <= start:
                break
            # Every character costs at least a byte: the rest cannot fit if it is longer than
            # the limit, which spares measuring the whole rest of a long reply for every part.
            rest = rendered.sent_end[stop - 1] - rendered.sent_start[start]
            if rest <= self.max_bytes and self.fits(sent_prefix, start, stop):
                parts.append(rendered.out_piece(start, stop))
                break
            if not self.fits(sent_prefix, start, start + 1):
                parts.extend(self._cut_atom(sent_prefix, rendered.atoms[start]))
                start = rendered.first(start + 1)
                continue
            # Sizes grow with every atom, so binary search for the last atom that still fits,
            # within the atoms whose characters alone do not exceed the limit.
            reach = rendered.sent_start[start] + self.max_bytes
            low = start + 1
            high = max(low, bisect.bisect_right(rendered.sent_end, reach, low, stop - 1))
            while low < high:
                middle = (low + high + 1) // 2
                if self.fits(sent_prefix, start, middle):
                    low = middle
                else:
                    high = middle - 1
            cut = _choose_break(rendered, start, low)
            parts.append(rendered.out_piece(start, rendered.last(start, cut)))
            start = rendered.first(cut)
        return parts

    def _cut_atom(self, sent_prefix: str, atom: _Atom) -> list[str]:
        """Last resort for one atom that does not fit a part with its formatting: without
        formatting, and if that is still too big, code point by code point."""
        if self.measure(sent_prefix + atom.sent) <= self.max_bytes:
            return [atom.out]
        pieces: list[str] = []
        out: list[str] = []
        sent: list[str] = []
        for char in atom.text:
            char_out = _html_escape(char) if self.html else char
            char_sent = char_out if self.html else self.escape(char)
            if sent and self.measure(sent_prefix + "".join(sent) + char_sent) > self.max_bytes:
                pieces.append("".join(out))
                out, sent = [], []
            if self.measure(sent_prefix + char_sent) > self.max_bytes:
                raise ValueError(
                    f"max_bytes={self.max_bytes} cannot hold a single character of this reply"
                )
            out.append(char_out)
            sent.append(char_sent)
        if out:
            pieces.append("".join(out))
        return pieces
