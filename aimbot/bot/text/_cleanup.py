"""Input clean-up: the answer made safe to encode and show before any Markdown is parsed.

It guards the wire (the UCS-2 encoder) and the user's window (control characters), not the
Markdown syntax, so it stays apart from the parsers.
"""

from __future__ import annotations

import re
from typing import Final

_CONTROL_CHARS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff]")
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_LINE_BREAKS: Final = re.compile("\r\n?|[\u2028\u2029\x85]")
# A reasoning model's thinking: an unterminated <think> swallows the rest.
_REASONING: Final = re.compile(
    r"<think>.*?(?:</think>|\Z)|<details[^>]*>\s*<summary>\s*Thinking.*?</details>",
    re.DOTALL | re.IGNORECASE,
)


def _normalize(markdown: str) -> list[str]:
    """Lines of the answer, safe to encode: a stray surrogate from a broken JSON escape would
    make the UCS-2 encoder fail later, and control characters would reach the user's window."""
    if _SURROGATES.search(markdown):
        # Re-pairs surrogates that form a character and replaces the lone ones with U+FFFD.
        markdown = markdown.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    markdown = _LINE_BREAKS.sub("\n", markdown)
    markdown = _CONTROL_CHARS.sub("", markdown)
    return [line.expandtabs(4) for line in markdown.split("\n")]
