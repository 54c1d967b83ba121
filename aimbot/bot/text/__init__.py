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
"""

from __future__ import annotations

import bisect
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Final, Literal, NamedTuple

__all__ = [
    "MIN_MAX_BYTES",
    "ReplyFormat",
    "markdown_to_aim_html",
    "markdown_to_plain",
    "render_reply",
    "split_reply",
]

logger = logging.getLogger(__name__)

ReplyFormat = Literal["html", "plain"]

MIN_MAX_BYTES: Final = 64
"""Below this a numbered part plus a little formatting may not fit one character."""

_MONO_OPEN: Final = '<font face="Courier New">'
_RULE_TEXT: Final = "----------"

_HTML_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
_PLAIN_TO_HTML: Final = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "<br>"}
)


def _html_escape(text: str) -> str:
    return text.translate(_HTML_ESCAPES)


def _plain_to_html(text: str) -> str:
    # Same rule as aimbot.oscar.imtext.plain_to_html; a local copy keeps this module free of
    # the protocol layer so the two can be tested apart.
    return text.translate(_PLAIN_TO_HTML)


# --------------------------------------------------------------------------------------------
# Input clean-up


_CONTROL_CHARS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff]")
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_LINE_BREAKS: Final = re.compile("\r\n?|[\u2028\u2029\x85]")


def _normalize(markdown: str) -> list[str]:
    """Lines of the answer, safe to encode: a stray surrogate from a broken JSON escape would
    make the UCS-2 encoder fail later, and control characters would reach the user's window."""
    if _SURROGATES.search(markdown):
        # Re-pairs surrogates that form a character and replaces the lone ones with U+FFFD.
        markdown = markdown.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    markdown = _LINE_BREAKS.sub("\n", markdown)
    markdown = _CONTROL_CHARS.sub("", markdown)
    return [line.expandtabs(4) for line in markdown.split("\n")]


# --------------------------------------------------------------------------------------------
# The styled-run model


@dataclass(frozen=True, slots=True)
class _Style:
    href: str | None = None
    bold: bool = False
    italic: bool = False
    mono: bool = False


_NO_STYLE: Final = _Style()


@dataclass(frozen=True, slots=True)
class _Run:
    text: str
    style: _Style = _NO_STYLE
    verbatim: bool = False  # code: spaces are content and must survive HTML rendering
    glued: bool = False  # a list marker or quote sign: never end a part right after it


@dataclass(frozen=True, slots=True)
class _Line:
    runs: tuple[_Run, ...]
    gap_before: bool = False  # a blank line (paragraph break) precedes this line
    keep_with_next: bool = False  # a heading: a part should not end right after it


_Tag = tuple[str, str]  # (opening, closing)


@lru_cache(maxsize=512)
def _tags(style: _Style) -> tuple[_Tag, ...]:
    """Tags in one fixed nesting order, so that any two styles share a comparable prefix."""
    tags: list[_Tag] = []
    if style.href is not None:
        tags.append((f'<a href="{_html_escape(style.href)}">', "</a>"))
    if style.bold:
        tags.append(("<b>", "</b>"))
    if style.italic:
        tags.append(("<i>", "</i>"))
    if style.mono:
        tags.append((_MONO_OPEN, "</font>"))
    return tuple(tags)


# --------------------------------------------------------------------------------------------
# Inline Markdown: emphasis, code spans, links


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


# --------------------------------------------------------------------------------------------
# Block Markdown


@dataclass(frozen=True, slots=True)
class _Paragraph:
    text: str
    gap_before: bool


@dataclass(frozen=True, slots=True)
class _Heading:
    text: str
    gap_before: bool


@dataclass(frozen=True, slots=True)
class _ListItem:
    level: int
    marker: str
    text: str
    gap_before: bool


@dataclass(frozen=True, slots=True)
class _Quote:
    blocks: tuple[_Block, ...]
    gap_before: bool


@dataclass(frozen=True, slots=True)
class _CodeBlock:
    lines: tuple[str, ...]
    gap_before: bool


@dataclass(frozen=True, slots=True)
class _Rule:
    gap_before: bool


@dataclass(frozen=True, slots=True)
class _TableRow:
    cells: tuple[str, ...]
    gap_before: bool


_Block = _Paragraph | _Heading | _ListItem | _Quote | _CodeBlock | _Rule | _TableRow

_FENCE: Final = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX_HEADING: Final = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE: Final = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_SETEXT: Final = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_BULLET: Final = re.compile(r"^(?P<indent> *)[-*+][ \t]+(?P<text>.*)$")
_ORDERED: Final = re.compile(r"^(?P<indent> *)(?P<number>\d{1,9})[.)][ \t]+(?P<text>.*)$")
_QUOTE: Final = re.compile(r"^ {0,3}> ?(?P<text>.*)$")
_TABLE_DELIMITER: Final = re.compile(r"^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$")
_CELL_SEPARATOR: Final = re.compile(r"(?<!\\)\|")


def _table_starts(lines: Sequence[str], index: int) -> bool:
    return (
        "|" in lines[index]
        and index + 1 < len(lines)
        and "|" in lines[index + 1]
        and _TABLE_DELIMITER.match(lines[index + 1]) is not None
    )


def _starts_block(lines: Sequence[str], index: int) -> bool:
    line = lines[index]
    return bool(
        _FENCE.match(line)
        or _ATX_HEADING.match(line)
        or _RULE.match(line)
        or _BULLET.match(line)
        or _ORDERED.match(line)
        or _QUOTE.match(line)
        or _table_starts(lines, index)
    )


def _table_cells(row: str) -> tuple[str, ...]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return tuple(cell.strip() for cell in _CELL_SEPARATOR.split(row))


_MAX_QUOTE_DEPTH: Final = 8  # deeper ">" stay text: no recursion an answer could exhaust
_MAX_LIST_LEVEL: Final = 5


def _parse_blocks(lines: Sequence[str], depth: int = 0) -> list[_Block]:
    """Line-oriented block parser for the Markdown LLMs actually write (not full CommonMark:
    no indented code blocks, no reference links, lists are flat lines with a nesting level)."""
    blocks: list[_Block] = []
    paragraph: list[str] = []
    paragraph_gap = False
    gap = False
    list_indents: list[int] = []
    index = 0

    def flush() -> None:
        nonlocal paragraph
        if paragraph:
            blocks.append(_Paragraph("\n".join(paragraph), paragraph_gap))
            paragraph = []

    def emit(block: _Block) -> None:
        nonlocal gap
        flush()
        blocks.append(block)
        gap = False

    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence and not (fence["fence"][0] == "`" and "`" in fence["info"]):
            marker, indent = fence["fence"], len(fence["indent"])
            closing = re.compile(rf"^ *{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            body: list[str] = []
            index += 1
            while index < len(lines) and not closing.match(lines[index]):
                content = lines[index]
                strip = min(indent, len(content) - len(content.lstrip(" ")))
                body.append(content[strip:].rstrip())
                index += 1
            index += 1  # the closing fence (or the end of an unclosed block)
            while body and not body[-1]:
                body.pop()
            while body and not body[0]:
                body.pop(0)
            emit(_CodeBlock(tuple(body), gap))
            list_indents.clear()
            continue
        if not line.strip():
            flush()
            gap = gap or bool(blocks)
            index += 1
            continue
        if paragraph and _SETEXT.match(line):
            text = " ".join(paragraph)
            paragraph = []
            emit(_Heading(text, paragraph_gap))
            index += 1
            continue
        heading = _ATX_HEADING.match(line)
        bullet = _BULLET.match(line)
        ordered = _ORDERED.match(line)
        quote = _QUOTE.match(line) if depth < _MAX_QUOTE_DEPTH else None
        if heading:
            emit(_Heading(heading["text"] or "", gap))
            list_indents.clear()
        elif _RULE.match(line):
            emit(_Rule(gap))
            list_indents.clear()
        elif bullet or ordered:
            item = bullet or ordered
            assert item is not None
            width = len(item["indent"])
            while list_indents and list_indents[-1] > width:
                list_indents.pop()
            if not list_indents or list_indents[-1] < width:
                list_indents.append(width)
            # An ASCII bullet: one "•" would turn the whole IM into UCS-2 and double its size.
            marker = "- " if bullet else f"{item['number']}. "
            level = min(len(list_indents) - 1, _MAX_LIST_LEVEL)
            emit(_ListItem(level, marker, item["text"].strip(), gap))
        elif quote:
            inner: list[str] = []
            while index < len(lines):
                quoted = _QUOTE.match(lines[index])
                if quoted is None:
                    break
                inner.append(quoted["text"])
                index += 1
            emit(_Quote(tuple(_parse_blocks(inner, depth + 1)), gap))
            list_indents.clear()
            continue
        elif _table_starts(lines, index):
            emit(_TableRow(_table_cells(line), gap))
            index += 2
            while index < len(lines) and lines[index].strip() and "|" in lines[index]:
                emit(_TableRow(_table_cells(lines[index]), False))
                index += 1
            list_indents.clear()
            continue
        elif (
            not paragraph
            and not gap
            and blocks
            and isinstance(blocks[-1], _ListItem)
            and not _starts_block(lines, index)
        ):
            last = blocks[-1]  # a lazy continuation line of the list item above
            blocks[-1] = replace(last, text=f"{last.text}\n{line.strip()}")
        else:
            if not paragraph:
                paragraph_gap = gap
                gap = False
                list_indents.clear()
            paragraph.append(line.strip())
        index += 1
    flush()
    return blocks


def _block_lines(block: _Block, link_as_text: LinkAsText) -> list[_Line]:
    if isinstance(block, _Paragraph):
        return [_Line(tuple(runs)) for runs in _inline_lines(block.text, _NO_STYLE, link_as_text)]
    if isinstance(block, _Heading):
        heading = _inline_line(block.text, _Style(bold=True), link_as_text)
        return [_Line(tuple(heading), keep_with_next=True)]
    if isinstance(block, _ListItem):
        indent = "  " * block.level
        lines = _inline_lines(block.text, _NO_STYLE, link_as_text)
        first = [_Run(indent, verbatim=True), _Run(block.marker, glued=True), *lines[0]]
        rest = [[_Run(indent + "  ", verbatim=True), *runs] for runs in lines[1:]]
        return [_Line(tuple(runs)) for runs in [first, *rest]]
    if isinstance(block, _Quote):
        inner = _layout(block.blocks, link_as_text)
        return [replace(line, runs=(_Run("> ", glued=True), *line.runs)) for line in inner]
    if isinstance(block, _CodeBlock):
        code = _Style(mono=True)
        return [_Line((_Run(text, code, verbatim=True),) if text else ()) for text in block.lines]
    if isinstance(block, _Rule):
        return [_Line((_Run(_RULE_TEXT),))]
    runs: list[_Run] = []
    for index, cell in enumerate(block.cells):
        if index:
            runs.append(_Run(" | "))
        runs.extend(_inline_line(cell, _NO_STYLE, link_as_text))
    return [_Line(tuple(runs))]


def _layout(blocks: Sequence[_Block], link_as_text: LinkAsText) -> list[_Line]:
    lines: list[_Line] = []
    for block in blocks:
        block_lines = _block_lines(block, link_as_text)
        if block_lines and block.gap_before:
            block_lines[0] = replace(block_lines[0], gap_before=True)
        lines.extend(block_lines)
    return lines


# --------------------------------------------------------------------------------------------
# Atoms: the smallest pieces a reply is cut between

# Break levels of the boundary *before* an atom; higher is a better place to split a reply.
_CHAR: Final = 0
_WORD: Final = 1
_SENTENCE: Final = 2
_LINE: Final = 3
_PARAGRAPH: Final = 4
_BREAK_LEVELS: Final = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)

_CJK: Final = (
    "\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f"
)
# Whitespace, one CJK character (CJK text has no spaces, every character is a word), or a word.
_TOKEN: Final = re.compile(
    rf"(\s+)|([{_CJK}][\u0300-\u036f\u3099\u309a\ufe00-\ufe0f]*)|([^\s{_CJK}]+)"
)
_CJK_CHAR: Final = re.compile(f"[{_CJK}]")
_CJK_NO_BREAK_BEFORE: Final = frozenset("、。，．：；？！）」』】〕〉》〙〗ー…‥・〜")
_CJK_SENTENCE_END: Final = frozenset("。！？")
_SENTENCE_END: Final = frozenset(".!?…")
_CLOSERS: Final = "\"')]}”’»*_"

_ZWJ: Final = "\u200d"


def _extends_cluster(char: str) -> bool:
    """Characters that belong to the character before them (never start a part)."""
    code = ord(char)
    if code < 0x300:
        return False
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin tones
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences (flags of regions)
        or 0xE0100 <= code <= 0xE01EF
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _clusters(text: str) -> list[str]:
    """User-perceived characters: combining marks, ZWJ emoji sequences and flag pairs stay whole."""
    if text.isascii():
        return list(text)
    clusters: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        end = pos + 1
        if _is_regional_indicator(text[pos]) and end < length and _is_regional_indicator(text[end]):
            end += 1
        while end < length:
            if text[end] == _ZWJ:
                end += 2 if end + 1 < length and not text[end + 1].isspace() else 1
            elif _extends_cluster(text[end]):
                end += 1
            else:
                break
        clusters.append(text[pos:end])
        pos = end
    return clusters


class _Atom(NamedTuple):
    text: str  # as written (used to re-escape when a word must be cut)
    out: str  # as it appears in the part: HTML fragment or plain text
    sent: str  # as the wire sees it (plain text escaped), for measuring
    tags: tuple[_Tag, ...] | None  # None: a line break, which keeps whatever tags surround it
    space: bool  # whitespace, dropped at the ends of a part
    indent: bool  # code whitespace, kept at the start of a line
    newline: bool
    level: int  # break level of the boundary before this atom


def _verbatim_spaces(spaces: str, at_line_start: bool) -> str:
    # AIM clients collapse runs of spaces like any HTML renderer; alternating &nbsp; keeps code
    # indentation visible at a fraction of the bytes of all-&nbsp;.
    return "".join(
        "&nbsp;" if char == " " and (index % 2 == 0) == at_line_start else _html_escape(char)
        for index, char in enumerate(spaces)
    )


def _ends_sentence(text: str) -> bool:
    stripped = text.rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _SENTENCE_END


def _same_style(style: _Style) -> _Style:
    return style


@dataclass(frozen=True, slots=True)
class _AtomOptions:
    html: bool
    escape: Callable[[str], str]  # plain text as the wire sees it
    style_of: Callable[[_Style], _Style] = _same_style  # the formatting the size limit allows
    too_long: Callable[[str], bool] | None = None  # a word to cut into characters


def _atomize(lines: Sequence[_Line], options: _AtomOptions) -> list[_Atom]:
    # The hot loop of splitting (one pass over every word), hence the local names.
    html, escape, style_of, too_long = (
        options.html,
        options.escape,
        options.style_of,
        options.too_long,
    )
    atoms: list[_Atom] = []
    append = atoms.append
    escaped: dict[str, str] = {}
    br_out = "<br>" if html else "\n"
    br_sent = br_out if html else escape("\n")
    for line_number, line in enumerate(lines):
        if line_number:
            level = _PARAGRAPH if line.gap_before else _LINE
            if lines[line_number - 1].keep_with_next:
                level = _WORD
            append(_Atom("\n", br_out, br_sent, None, True, False, True, level))
            if line.gap_before:
                append(_Atom("\n", br_out, br_sent, None, True, False, True, _CHAR))
        previous = ""  # the token before, on this line
        previous_space = True
        for run in line.runs:
            tags = _tags(style_of(run.style)) if html else ()
            for match in _TOKEN.finditer(run.text):
                token = match.group()
                if html:
                    if run.verbatim and match.lastindex == 1:
                        out = _verbatim_spaces(token, not previous)
                    else:
                        out = token.translate(_HTML_ESCAPES)
                    sent = out
                else:
                    out = token
                    sent = escaped.get(token) or escaped.setdefault(token, escape(token))
                if match.lastindex == 1:
                    level = _CHAR
                    if not previous_space and not run.glued:
                        level = _SENTENCE if _ends_sentence(previous) else _WORD
                    append(_Atom(token, out, sent, tags, True, run.verbatim, False, level))
                    previous, previous_space = token, True
                    continue
                level = _CHAR
                if not previous_space:
                    last = previous[-1]
                    cjk_before = last >= "\u2e80" and _CJK_CHAR.match(last) is not None
                    if (cjk_before or match.lastindex == 2) and token[
                        0
                    ] not in _CJK_NO_BREAK_BEFORE:
                        level = _WORD
                    if cjk_before and last in _CJK_SENTENCE_END:
                        level = _SENTENCE
                if too_long is not None and too_long(sent):
                    for cluster in _clusters(token):
                        cluster_out = cluster.translate(_HTML_ESCAPES) if html else cluster
                        cluster_sent = cluster_out if html else escape(cluster)
                        append(
                            _Atom(
                                cluster, cluster_out, cluster_sent, tags, False, False, False, level
                            )
                        )
                        level = _CHAR
                else:
                    append(_Atom(token, out, sent, tags, False, False, False, level))
                previous, previous_space = token, False
    return atoms


# --------------------------------------------------------------------------------------------
# Rendering and cutting atom sequences


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


# --------------------------------------------------------------------------------------------
# Public API


def _check_format(fmt: str) -> None:
    if fmt not in ("html", "plain"):
        raise ValueError(f"reply format must be 'html' or 'plain', got {fmt!r}")


def _never_as_text(url: str) -> bool:
    return False


def _always_as_text(url: str) -> bool:
    return True


def _render_blocks(blocks: Sequence[_Block], html: bool) -> str:
    lines = _layout(blocks, _never_as_text if html else _always_as_text)
    atoms = _atomize(lines, _AtomOptions(html=html, escape=_plain_to_html))
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


def split_reply(
    markdown: str,
    fmt: ReplyFormat,
    max_bytes: int,
    measure: Callable[[str], int],
    escape: Callable[[str], str] = _plain_to_html,
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
    whole_size = measure(whole if html else escape(whole))
    if whole_size <= max_bytes:
        return [whole]
    if dropped:
        logger.debug("Reply limit of %d bytes is too small for some %s", max_bytes, dropped)

    packer = _Packer(rendered, html, max_bytes, measure, escape)
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


_REASONING = re.compile(
    r"<think>.*?(?:</think>|\Z)|<details[^>]*>\s*<summary>\s*Thinking.*?</details>",
    re.DOTALL | re.IGNORECASE,
)


def strip_reasoning(answer: str) -> str:
    """Drop a reasoning model's thinking (<think>…</think>, Dify's "Thinking…" details block).

    It is the model's scratch work, not the answer; an unterminated <think> swallows the rest.
    """
    return _REASONING.sub("", answer).strip()
