"""Atoms: the smallest pieces a reply is cut between (words, spaces, line breaks).

Each atom is rendered once, as AIM HTML or plain text and as the wire sees it, and carries how
good a place the boundary before it is to end a part. Splitting cuts this sequence rather than
an HTML string, so no part ends inside a tag, an entity, a word or a character (a cluster of
code points) unless nothing else fits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from aimbot.bot.text._markup import _html_escape, _Line, _Style, _Tag, _tags

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
                        out = _html_escape(token)
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
                        cluster_out = _html_escape(cluster) if html else cluster
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
