"""IM text: charsets and the small amount of HTML AIM clients speak
(docs/oscar-protocol.md §7, §12.2, §12.3).

Pure functions, because the bot layer needs the exact encoded size of a reply before it sends
it (servers count bytes, not characters) and because text from other clients arrives in every
charset and markup style that AIM ever had.
"""

from __future__ import annotations

import html
import re

CHARSET_ASCII = 0x0000
CHARSET_UCS2BE = 0x0002
CHARSET_LATIN1 = 0x0003


def _sanitize_surrogates(text: str) -> str:
    # A lone surrogate (possible in a Python str) has no UTF-16 encoding; keep the rest.
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def _plain_ascii(text: str) -> bool:
    return text.isascii() and "\x00" not in text


def encode_im_text(text: str) -> tuple[int, bytes]:
    """(charset, payload): pure ASCII as 0x0000, anything else as UCS-2BE (0x0002).

    ASCII with a NUL goes as UCS-2BE too: receivers (and decode_im_text) read NULs under
    charset 0 as the sign of mislabelled 16-bit text.

    Characters outside the BMP become surrogate pairs, which every UCS-2 client of the 2000s
    shows as the right emoji or at worst as two boxes; nothing is dropped.
    """
    if _plain_ascii(text):
        return CHARSET_ASCII, text.encode("ascii")
    try:
        return CHARSET_UCS2BE, text.encode("utf-16-be")
    except UnicodeEncodeError:
        return CHARSET_UCS2BE, _sanitize_surrogates(text).encode("utf-16-be")


def im_text_size(text: str) -> int:
    """Encoded bytes of `text` on the wire; compare this (not len(text)) with the server limit."""
    if _plain_ascii(text):
        return len(text)
    return len(encode_im_text(text)[1])


def _cp1252_table() -> str:
    # Windows clients label cp1252 as Latin-1; the five bytes cp1252 leaves undefined keep
    # their Latin-1 meaning so that decoding can never fail.
    chars = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(byte))
    return "".join(chars)


_CP1252 = _cp1252_table()


def _decode_cp1252(payload: bytes) -> str:
    return "".join(_CP1252[byte] for byte in payload)


def _try_utf8(payload: bytes) -> str | None:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decode_by_nuls(payload: bytes) -> str:
    """Mislabelled 16-bit text, told by where its NULs sit.

    In UTF-16BE every ASCII character is 00 xx, so NULs at even offsets mean BE; NULs only at
    odd offsets mean a little-endian writer. An odd length cannot be 16-bit text: the NULs are
    dropped and the rest read as usual.
    """
    if len(payload) % 2 == 0:
        even_nul = any(payload[i] == 0 for i in range(0, len(payload), 2))
        codec = "utf-16-be" if even_nul else "utf-16-le"
        return payload.decode(codec, errors="replace")
    rest = payload.replace(b"\x00", b"")
    return decode_im_text(CHARSET_ASCII, rest)


def decode_im_text(charset: int, payload: bytes) -> str:
    """Text from any charset a server or client uses; never raises.

    Charset 0 is ASCII by the book, but servers put UTF-8 there (docs/oscar-protocol.md §7):
    valid UTF-8 wins, anything else is read as cp1252. Charset 3 gets the same UTF-8 check
    because mislabelled UTF-8 is the commonest client bug, while real Latin-1 text is almost
    never valid UTF-8.
    UCS-2BE is read as UTF-16BE so surrogate pairs become the characters they encode.

    Text under any other label that holds NUL bytes cannot be what the label says (some servers
    relabel every IM as charset 0): it is decoded by its content (_decode_by_nuls).
    """
    if charset == CHARSET_UCS2BE:
        return payload.decode("utf-16-be", errors="replace")
    if b"\x00" in payload:
        return _decode_by_nuls(payload)
    if payload.isascii():
        return payload.decode("ascii")
    utf8 = _try_utf8(payload)
    if utf8 is not None:
        return utf8
    return _decode_cp1252(payload)


def plain_to_html(text: str) -> str:
    """Plain text as AIM HTML: & < > " escaped, every line break as <br>."""
    escaped = html.escape(text, quote=True).replace("&#x27;", "'")
    return escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


_TAG_OR_COMMENT = re.compile(r"<!--.*?(?:-->|$)|<(/?)([A-Za-z][A-Za-z0-9]*)(?:\s[^<>]*)?/?>", re.S)
_BLOCK_TAGS = frozenset({"p", "div"})


def _needs_line_break(pieces: list[str]) -> bool:
    return any(pieces) and not pieces[-1].endswith("\n")


def html_to_plain(markup: str) -> str:
    """AIM HTML as plain text: tags dropped, entities decoded, <br> and paragraphs as newlines.

    Tags match in any case, with or without the <HTML><BODY> wrapper. A "<" that does not start
    a tag (a client that forgot to escape "a < b") stays as text.
    """
    pieces: list[str] = []
    pos = 0
    for match in _TAG_OR_COMMENT.finditer(markup):
        if match.start() > pos:
            pieces.append(html.unescape(markup[pos : match.start()]))
        pos = match.end()
        name = (match.group(2) or "").lower()
        if name == "br":
            pieces.append("\n")
        elif name in _BLOCK_TAGS and not match.group(1) and _needs_line_break(pieces):
            # A paragraph that follows earlier text starts on a new line; the closing tag
            # adds nothing, so "<p>a</p><p>b</p>" reads "a\nb".
            pieces.append("\n")
    if pos < len(markup):
        pieces.append(html.unescape(markup[pos:]))
    return "".join(pieces)
