"""IM text: charsets in and out, AIM HTML in and out (docs/oscar-protocol.md §7, §12.2-3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.imtext import (
    decode_im_text,
    encode_im_text,
    html_to_plain,
    im_text_size,
    plain_to_html,
)

UNICODE_SAMPLE = "café — ünïcödé ✓ 你好 😀"


def test_ascii_goes_out_as_charset_0() -> None:
    assert encode_im_text("hello <b>") == (0x0000, b"hello <b>")


def test_non_ascii_goes_out_as_ucs2be_with_surrogate_pairs() -> None:
    charset, payload = encode_im_text("é😀")
    assert charset == 0x0002
    assert payload == b"\x00\xe9" + b"\xd8\x3d\xde\x00"


def test_sizes_are_bytes_not_characters() -> None:
    assert im_text_size("abc") == 3
    assert im_text_size("é") == 2  # one BMP character in UCS-2
    assert im_text_size("a😀") == 6  # ASCII is 2 bytes too once the text is UCS-2; emoji 4
    assert im_text_size(UNICODE_SAMPLE) == len(UNICODE_SAMPLE.encode("utf-16-be"))


def test_lone_surrogates_are_replaced_not_fatal() -> None:
    charset, payload = encode_im_text("a\ud800b")
    assert charset == 2
    assert payload.decode("utf-16-be") == "a\ufffdb"


@pytest.mark.parametrize(
    ("charset", "payload", "text"),
    [
        (0x0000, b"plain", "plain"),
        (0x0000, "café 😀".encode(), "café 😀"),  # UTF-8 under charset 0 (RAS bridges)
        (0x0000, b"caf\xe9", "café"),  # not UTF-8: read as cp1252
        (0x0000, b"\x93quoted\x94", "\u201cquoted\u201d"),  # cp1252 smart quotes
        (0x0003, b"na\xefve", "naïve"),  # Latin-1
        (0x0003, "naïve".encode(), "naïve"),  # UTF-8 mislabelled as Latin-1
        (0x0003, b"\x81", "\x81"),  # undefined in cp1252: keeps its Latin-1 meaning
        (0x0002, "你好😀".encode("utf-16-be"), "你好😀"),
        (0x0002, b"\x00h\x00", "h\ufffd"),  # odd length: truncated, not fatal
        (0x0002, b"\xd8\x3d", "\ufffd"),  # lone surrogate
        (0x1234, "ü".encode(), "ü"),  # unknown charset: UTF-8 first
        (0x1234, b"\xfc", "ü"),  # then cp1252
    ],
)
def test_incoming_charsets(charset: int, payload: bytes, text: str) -> None:
    assert decode_im_text(charset, payload) == text


def test_plain_to_html_escapes_and_breaks_lines() -> None:
    assert plain_to_html('a < b & "c" > d') == "a &lt; b &amp; &quot;c&quot; &gt; d"
    assert plain_to_html("one\ntwo\r\nthree\rfour") == "one<br>two<br>three<br>four"
    assert plain_to_html("it's") == "it's"


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        (
            '<HTML><BODY BGCOLOR="#ffffff"><FONT LANG="0">Hi &amp; bye</FONT></BODY></HTML>',
            "Hi & bye",
        ),
        ("<html><body>hello</body></html>", "hello"),
        ("no html at all", "no html at all"),
        ("one<br>two<BR>three<br/>four<Br />five", "one\ntwo\nthree\nfour\nfive"),
        ("<p>first</p><p>second</p>", "first\nsecond"),
        ("<div>a</div><DIV>b</DIV>", "a\nb"),
        ("line<br><p>para</p>", "line\npara"),
        ("a < b and c > d", "a < b and c > d"),  # a client that forgot to escape
        ("x<!-- comment -->y", "xy"),
        ("&lt;b&gt; &quot;q&quot; &#39;s&#39; &#x263A; &nbsp;", "<b> \"q\" 's' \u263a \xa0"),
        ("&amp;lt;", "&lt;"),
        ('<a href="http://x">link</a>', "link"),
        ("unterminated <b", "unterminated <b"),
    ],
)
def test_html_to_plain(markup: str, text: str) -> None:
    assert html_to_plain(markup) == text


no_surrogates = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(no_surrogates)
def test_text_survives_the_whole_outgoing_and_incoming_path(text: str) -> None:
    charset, payload = encode_im_text(plain_to_html(text))
    assert len(payload) == im_text_size(plain_to_html(text))
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    assert html_to_plain(decode_im_text(charset, payload)) == normalised


@given(st.integers(0, 0xFFFF), st.binary(max_size=60), st.text(max_size=60))
def test_incoming_text_functions_never_raise(charset: int, payload: bytes, markup: str) -> None:
    assert isinstance(decode_im_text(charset, payload), str)
    assert isinstance(html_to_plain(markup), str)
    assert isinstance(encode_im_text(markup)[1], bytes)


# -- 16-bit text under an 8-bit label (issue 13 item 11) -------------------------------------------


def test_ucs2_relabelled_as_charset_0_decodes_intact() -> None:
    sample = "café 你好 😀"
    assert sample.encode("utf-16-be")[:4] == b"\x00\x63\x00\x61"
    assert decode_im_text(0x0000, sample.encode("utf-16-be")) == sample
    assert decode_im_text(0x0003, sample.encode("utf-16-be")) == sample  # Latin-1 label too
    assert decode_im_text(0x0000, "clear".encode("utf-16-be")) == "clear"


def test_little_endian_16_bit_text_is_told_by_nuls_at_odd_offsets() -> None:
    assert decode_im_text(0x0000, "clear".encode("utf-16-le")) == "clear"


def test_an_odd_length_with_nuls_cannot_be_16_bit_the_nuls_are_dropped() -> None:
    assert decode_im_text(0x0000, b"hi\x00 there") == "hi there"


def test_ascii_with_a_nul_goes_out_as_ucs2_so_it_reads_back_the_same() -> None:
    charset, payload = encode_im_text("a\x00b")
    assert charset == 0x0002
    assert decode_im_text(charset, payload) == "a\x00b"
    assert im_text_size("a\x00b") == 6


# Any text with at least one character U+0001..U+00FF: its UTF-16BE form has a NUL at an even
# offset, which is what proves the label wrong.
relabelled = st.tuples(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.characters(min_codepoint=1, max_codepoint=0xFF),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
).map("".join)


@given(relabelled, st.sampled_from([0x0000, 0x0003, 0x0002]))
def test_utf16be_under_any_label_decodes_to_the_text(text: str, charset: int) -> None:
    assert decode_im_text(charset, text.encode("utf-16-be")) == text


@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_any_payload_under_any_charset_decodes_without_raising(
    payload: bytes, charset: int
) -> None:
    assert isinstance(decode_im_text(charset, payload), str)
