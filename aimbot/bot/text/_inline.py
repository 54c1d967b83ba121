"""Inline Markdown (emphasis, code spans, links) as lines of styled runs.

This is where CommonMark's subtle rules live (flanking runs, the rule of three, link
destinations), on their own so that they can be read without the block structure around them.
Every scan is linear in the paragraph (backtick runs, brackets and parentheses are indexed once),
because an answer is untrusted input of any length.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from aimbot.bot.text._markup import _Run, _Style


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Code:
    text: str


@dataclass(frozen=True, slots=True)
class _Break:
    pass


@dataclass(frozen=True, slots=True)
class _Open:
    strong: bool


@dataclass(frozen=True, slots=True)
class _Close:
    strong: bool


@dataclass(frozen=True, slots=True)
class _Link:
    url: str
    children: tuple[_Event, ...]


_Event = _Text | _Code | _Break | _Open | _Close | _Link


@dataclass(slots=True, eq=False)
class _Delimiter:
    """A run of * or _ while emphasis is being resolved (mutable: the algorithm consumes it)."""

    char: str
    count: int
    original: int
    can_open: bool
    can_close: bool
    seq: int
    opens: list[int] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)


_ASCII_PUNCT: Final = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_INLINE_SPECIAL: Final = re.compile(r"[\\`\[<*_\n]|!\[|(?<![0-9A-Za-z])https?://", re.IGNORECASE)
_BARE_URL: Final = re.compile(r"https?://[^\s<>\"`*\[\]{}|\\^]+", re.IGNORECASE)
_URL_TRAILING: Final = ".,;:!?'\"_~"
_AUTOLINK: Final = re.compile(r"<((?:https?://|mailto:)[^\s<>]+)>", re.IGNORECASE)
_EMAIL_AUTOLINK: Final = re.compile(r"<([^\s<>@\"]+@[^\s<>@\"]+\.[^\s<>@\"]+)>")
_LINK_SCHEMES: Final = ("http://", "https://", "mailto:")
_BRACKET_OR_ESCAPE: Final = re.compile(r"\\.|[\[\]]", re.DOTALL)
_PAREN_OR_SPACE: Final = re.compile(r"\\[!-/:-@\[-`{-~]|[()]|\s")


def _is_space(char: str) -> bool:
    return not char or char.isspace()


def _is_punct(char: str) -> bool:
    if not char:
        return False
    if char in _ASCII_PUNCT:
        return True
    return not char.isascii() and unicodedata.category(char)[0] in "PS"


def _linkable(url: str) -> bool:
    """Only web and mail links become tags: a javascript: or data: link in an answer is text."""
    lowered = url.lower()
    return lowered.startswith(_LINK_SCHEMES) and len(url) > lowered.index(":") + 1


def _trim_bare_url(url: str) -> str:
    # "see https://x.org/a." or "(https://x.org/a)": the sentence's punctuation is not the URL's.
    opened, closed = url.count("("), url.count(")")
    end = len(url)
    while end:
        char = url[end - 1]
        if char == ")" and closed > opened:
            closed -= 1
        elif char not in _URL_TRAILING:
            break
        end -= 1
    return url[:end]


def _backtick_runs(source: str) -> dict[int, list[int]]:
    """Start positions of every maximal backtick run, by run length (closing code spans in
    O(log n) instead of rescanning the paragraph for each unmatched backtick)."""
    runs: dict[int, list[int]] = {}
    for match in re.finditer("`+", source):
        runs.setdefault(len(match.group()), []).append(match.start())
    return runs


def _bracket_pairs(source: str) -> dict[int, int]:
    """Matching ] for each [ (escapes skipped), found once per paragraph for the same reason."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for match in _BRACKET_OR_ESCAPE.finditer(source):
        token = match.group()
        if token == "[":
            stack.append(match.start())
        elif token == "]" and stack:
            pairs[stack.pop()] = match.start()
    return pairs


def _unescape_punct(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _destination_ends(source: str) -> dict[int, int]:
    """For each "(", where a link destination starting after it ends: its matching ")" or the
    first whitespace, or -1 if an unbalanced "(" makes it invalid. One pass per paragraph, so
    that "[a](" repeated thousands of times is not rescanned for each link."""
    ends: dict[int, int] = {}
    stack: list[int] = []
    for match in _PAREN_OR_SPACE.finditer(source):
        token = match.group()
        if token == "(":
            stack.append(match.start())
        elif token == ")":
            if stack:
                ends[stack.pop()] = match.start()
        elif token[0] != "\\" and stack:
            ends[stack.pop()] = match.start()
            for position in stack:
                ends[position] = -1
            stack.clear()
    if stack:
        ends[stack.pop()] = len(source)
        for position in stack:
            ends[position] = -1
    return ends


def _link_destination(source: str, start: int, ends: dict[int, int]) -> tuple[str, int] | None:
    """Parse "(url "title")" at `start` (the "("); returns the url and the index after ")"."""
    length = len(source)
    if source.startswith("<", start + 1) or source.startswith(" <", start + 1):
        pos = source.index("<", start)
        end = source.find(">", pos)
        if end < 0 or "\n" in source[pos:end]:
            return None
        url = source[pos + 1 : end]
        pos = end + 1
    else:
        pos = ends.get(start, -1)
        if pos < 0:
            return None
        url = source[start + 1 : pos]
    while pos < length and source[pos] in " \n":
        pos += 1
    if pos < length and source[pos] in "\"'(":
        closer = ")" if source[pos] == "(" else source[pos]
        end = source.find(closer, pos + 1)
        if end < 0:
            return None
        pos = end + 1
        while pos < length and source[pos] in " \n":
            pos += 1
    if pos >= length or source[pos] != ")":
        return None
    return _unescape_punct(url).replace(" ", "%20"), pos + 1


def _flanking(before: str, after: str) -> tuple[bool, bool]:
    """CommonMark's left/right-flanking test for a delimiter run between two characters."""
    space_before, space_after = _is_space(before), _is_space(after)
    punct_before, punct_after = _is_punct(before), _is_punct(after)
    left = not space_after and (not punct_after or space_before or punct_before)
    right = not space_before and (not punct_before or space_after or punct_after)
    return left, right


def _tokenize(source: str, allow_links: bool) -> list[_Event | _Delimiter]:
    tokens: list[_Event | _Delimiter] = []
    text: list[str] = []
    code_runs = _backtick_runs(source)
    brackets = _bracket_pairs(source) if allow_links and "[" in source else {}
    destinations = _destination_ends(source) if brackets and "](" in source else {}
    length = len(source)
    pos = 0

    def flush() -> None:
        if text:
            tokens.append(_Text("".join(text)))
            text.clear()

    while pos < length:
        match = _INLINE_SPECIAL.search(source, pos)
        if match is None:
            text.append(source[pos:])
            break
        if match.start() > pos:
            text.append(source[pos : match.start()])
            pos = match.start()
        char = source[pos]
        if char == "\\":
            following = source[pos + 1 : pos + 2]
            if following == "\n":
                flush()
                tokens.append(_Break())
                pos += 2
            elif following and following in _ASCII_PUNCT:
                text.append(following)
                pos += 2
            else:
                text.append("\\")
                pos += 1
        elif char == "\n":
            flush()
            tokens.append(_Break())
            pos += 1
        elif char == "`":
            end = pos
            while end < length and source[end] == "`":
                end += 1
            width = end - pos
            candidates = code_runs.get(width, [])
            index = bisect.bisect_left(candidates, end)
            if index < len(candidates):
                close = candidates[index]
                content = source[end:close].replace("\n", " ")
                if len(content) > 1 and content[0] == content[-1] == " " and content.strip():
                    content = content[1:-1]
                flush()
                tokens.append(_Code(content))
                pos = close + width
            else:
                text.append(source[pos:end])
                pos = end
        elif char in "[!":
            opening = pos + 1 if char == "!" else pos
            closing = brackets.get(opening)
            parsed = None
            if closing is not None and source[closing + 1 : closing + 2] == "(":
                parsed = _link_destination(source, closing + 1, destinations)
            if parsed is None:
                text.append(source[pos : opening + 1])
                pos = opening + 1
                continue
            url, end = parsed
            if not _linkable(url):
                text.append(source[pos:end])  # not a web/mail link: it stays as written
            else:
                flush()
                label = source[opening + 1 : closing]
                tokens.append(_Link(url, tuple(_inline_events(label, allow_links=False))))
            pos = end
        elif char == "<":
            auto = _AUTOLINK.match(source, pos) if allow_links else None
            email = _EMAIL_AUTOLINK.match(source, pos) if allow_links and not auto else None
            if auto is not None and _linkable(auto.group(1)):
                flush()
                tokens.append(_Link(auto.group(1), (_Text(auto.group(1)),)))
                pos = auto.end()
            elif email is not None:
                flush()
                tokens.append(_Link("mailto:" + email.group(1), (_Text(email.group(1)),)))
                pos = email.end()
            else:
                text.append("<")
                pos += 1
        elif char in "*_":
            end = pos
            while end < length and source[end] == char:
                end += 1
            before = source[pos - 1] if pos else ""
            after = source[end] if end < length else ""
            left, right = _flanking(before, after)
            if char == "*":
                can_open, can_close = left, right
            else:  # "_" never opens or closes inside a word: snake_case_names stay intact
                can_open = left and (not right or _is_punct(before))
                can_close = right and (not left or _is_punct(after))
            flush()
            count = end - pos
            tokens.append(_Delimiter(char, count, count, can_open, can_close, len(tokens)))
            pos = end
        else:  # a bare http(s) URL
            found = _BARE_URL.match(source, pos) if allow_links else None
            url = _trim_bare_url(found.group()) if found else ""
            host_start = url.find("://") + 3
            if allow_links and len(url) > host_start and url[host_start].isalnum():
                flush()
                tokens.append(_Link(url, (_Text(url),)))
                pos += len(url)
            else:
                text.append(char)
                pos += 1
    flush()
    return tokens


def _resolve_emphasis(tokens: list[_Event | _Delimiter]) -> None:
    """Pair * and _ runs into emphasis following CommonMark's delimiter algorithm (incl. the
    rule of three), so that what an LLM meant as bold renders as bold and stray stars stay."""
    stack = [token for token in tokens if isinstance(token, _Delimiter)]
    bottoms: dict[tuple[str, bool, int], int] = {}
    closer_index = 0
    while closer_index < len(stack):
        closer = stack[closer_index]
        if not closer.can_close:
            closer_index += 1
            continue
        key = (closer.char, closer.can_open, closer.original % 3)
        bottom = bottoms.get(key, -1)
        opener_index = closer_index - 1
        found = -1
        while opener_index >= 0 and stack[opener_index].seq > bottom:
            opener = stack[opener_index]
            if opener.char == closer.char and opener.can_open:
                odd_match = (opener.can_close or closer.can_open) and (
                    (opener.original + closer.original) % 3 == 0
                    and not (opener.original % 3 == 0 and closer.original % 3 == 0)
                )
                if not odd_match:
                    found = opener_index
                    break
            opener_index -= 1
        if found < 0:
            bottoms[key] = closer.seq - 1
            if closer.can_open:
                closer_index += 1
            else:
                del stack[closer_index]
            continue
        opener = stack[found]
        used = 2 if opener.count >= 2 and closer.count >= 2 else 1
        opener.count -= used
        closer.count -= used
        opener.opens.append(used)
        closer.closes.append(used)
        del stack[found + 1 : closer_index]  # delimiters in between can no longer match
        closer_index = found + 1
        if opener.count == 0:
            del stack[found]
            closer_index -= 1
        if closer.count == 0:
            del stack[closer_index]


def _inline_events(source: str, allow_links: bool = True) -> list[_Event]:
    tokens = _tokenize(source, allow_links)
    _resolve_emphasis(tokens)
    events: list[_Event] = []
    for token in tokens:
        if not isinstance(token, _Delimiter):
            events.append(token)
            continue
        events.extend(_Close(used == 2) for used in token.closes)
        if token.count:
            events.append(_Text(token.char * token.count))
        events.extend(_Open(used == 2) for used in reversed(token.opens))
    return events


def _plain_text(events: Sequence[_Event]) -> str:
    parts: list[str] = []
    for event in events:
        if isinstance(event, _Text | _Code):
            parts.append(event.text)
        elif isinstance(event, _Link):
            parts.append(_plain_text(event.children))
    return "".join(parts)


LinkAsText = Callable[[str], bool]


def _event_runs(
    events: Sequence[_Event], base: _Style, link_as_text: LinkAsText
) -> list[list[_Run]]:
    """Events as lines of styled runs; a link the target cannot show becomes "text (url)"."""
    lines: list[list[_Run]] = [[]]
    strong = emphasis = 0
    style = base
    for event in events:
        if isinstance(event, _Text):
            lines[-1].append(_Run(event.text, style))
        elif isinstance(event, _Code):
            lines[-1].append(_Run(event.text, _Style(style.href, style.bold, style.italic, True)))
        elif isinstance(event, _Break):
            lines.append([])
        elif isinstance(event, _Open | _Close):
            step = 1 if isinstance(event, _Open) else -1
            if event.strong:
                strong += step
            else:
                emphasis += step
            bold, italic = base.bold or strong > 0, base.italic or emphasis > 0
            style = _Style(base.href, bold, italic, base.mono)
        else:
            label = _plain_text(event.children).strip()
            children: Sequence[_Event] = event.children if label else (_Text(event.url),)
            shown = event.url.removeprefix("mailto:") if label else event.url
            if link_as_text(event.url):
                inner = _event_runs(children, style, link_as_text)
                if label and label not in (event.url, shown):
                    inner[-1].append(_Run(f" ({event.url})", style))
            else:
                inner = _event_runs(children, replace(style, href=event.url), link_as_text)
            lines[-1].extend(inner[0])
            lines.extend(inner[1:])
    return lines


def _inline_lines(source: str, base: _Style, link_as_text: LinkAsText) -> list[list[_Run]]:
    return _event_runs(_inline_events(source), base, link_as_text)


def _inline_line(source: str, base: _Style, link_as_text: LinkAsText) -> list[_Run]:
    """One-line constructs (headings, table cells): inner line breaks become spaces."""
    runs: list[_Run] = []
    for index, line in enumerate(_inline_lines(source, base, link_as_text)):
        if index:
            runs.append(_Run(" ", base))
        runs.extend(line)
    return runs
