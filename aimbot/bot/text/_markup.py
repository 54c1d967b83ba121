"""The styled-run model, its AIM HTML tags and the escaping of text, shared by every stage.

Both Markdown parsers produce lines of styled runs, and the atoms and the renderer turn those
styles into tags; so the model sits below all of them and depends on none.
It is our own small model, never HTML taken from the answer, so nothing Dify writes can become
a tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

_MONO_OPEN: Final = '<font face="Courier New">'


def _html_escape(text: str) -> str:
    """`&`, `<`, `>` and `"` as entities (`&` first, so no entity is escaped twice).

    A look and a replace per character, each a scan in C: str.translate with a table looks up
    every character of the text in Python's dict and took 15 to 70 times as long (1.8 µs for
    an 80-character ASCII line, 8 µs for 130 characters with accents, against 0.12 µs), and
    html.escape (three replaces, each made even with nothing to replace) 2-4 times as long on
    the short tokens of a Markdown answer, where this runs once per word.
    """
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if '"' in text:
        text = text.replace('"', "&quot;")
    return text


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
