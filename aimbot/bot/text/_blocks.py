"""Block Markdown (paragraphs, headings, lists, quotes, code, rules, tables) laid out as lines.

The block structure decides which text the inline parser sees and how the lines of a reply are
separated (blank lines, indents, list markers, headings kept with their text), which is what the
splitter later reads to choose good places to cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from aimbot.bot.text._inline import LinkAsText, _inline_line, _inline_lines
from aimbot.bot.text._markup import _NO_STYLE, _Line, _Run, _Style

_RULE_TEXT: Final = "----------"


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


def _fence_closing(line: str) -> re.Pattern[str] | None:
    """When `line` opens a fenced code block: the pattern of the line that closes it.

    A backtick fence whose info string holds a backtick is not a fence (CommonMark).
    """
    opening = _FENCE.match(line)
    if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
        return None
    fence = opening["fence"]
    return re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")


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
