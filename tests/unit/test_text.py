"""Replies: Markdown to AIM HTML / plain text, and splitting to the IM byte limit (issue 4)."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aimbot.bot.text import (
    MIN_MAX_BYTES,
    ReplyFormat,
    markdown_to_aim_html,
    markdown_to_plain,
    render_reply,
    split_reply,
    with_note,
)

# -- the wire rules, written out here independently of the code under test ---------------------


def im_size(text: str) -> int:
    """Bytes on the wire: ASCII is 1 byte a char, anything else makes it all UCS-2BE."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-be", "surrogatepass"))  # 2 bytes per UTF-16 code unit


def plain_escape(text: str) -> str:
    """What the oscar layer does to plain text before sending: escape & < > " and <br>."""
    return html.escape(text, quote=True).replace("&#x27;", "'").replace("\n", "<br>")


def as_sent(part: str, fmt: ReplyFormat) -> str:
    return part if fmt == "html" else plain_escape(part)


PREFIX = re.compile(r"^\((\d+)/(\d+)\) ")
ALLOWED_TAG = re.compile(
    r'<br>|<b>|</b>|<i>|</i>|<a href="[^"<>]*">|</a>|<font face="Courier New">|</font>'
)
TAG_NAME = re.compile(r"<(/?)(\w+)")


def without_prefix(part: str) -> str:
    return PREFIX.sub("", part, count=1)


def content(part: str, fmt: ReplyFormat) -> str:
    """The text a user sees: numbering removed, tags stripped, entities decoded."""
    body = without_prefix(part)
    if fmt == "plain":
        return body
    return html.unescape(ALLOWED_TAG.sub("", body.replace("<br>", "\n")))


def assert_well_formed(part: str) -> None:
    """Only our tags, every one complete and balanced, every & an entity we write."""
    tags = ALLOWED_TAG.findall(part)
    stripped = ALLOWED_TAG.sub("", part)
    assert "<" not in stripped and ">" not in stripped, part
    assert not re.search(r"&(?!amp;|lt;|gt;|quot;|nbsp;)", stripped), part
    stack: list[str] = []
    for tag in tags:
        closing, name = TAG_NAME.match(tag).groups()  # type: ignore[union-attr]
        if name == "br":
            continue
        if closing:
            assert stack and stack[-1] == name, f"unbalanced </{name}> in {part!r}"
            stack.pop()
        else:
            stack.append(name)
    assert not stack, f"unclosed {stack} in {part!r}"


def nonspace(text: str) -> str:
    return "".join(text.split())


def check_parts(markdown: str, fmt: ReplyFormat, max_bytes: int) -> list[str]:
    """Every property a list of parts must have; returns the parts for further checks."""
    parts = split_reply(markdown, fmt, max_bytes, im_size, escape=plain_escape)
    whole = render_reply(markdown, fmt)
    if not whole:
        assert parts == []
        return parts
    for part in parts:
        assert im_size(as_sent(part, fmt)) <= max_bytes, (part, im_size(as_sent(part, fmt)))
        assert not re.search("[\ud800-\udfff]", part)
        if fmt == "html":
            assert_well_formed(part)
        else:
            assert "<" not in part or "<" in markdown  # no HTML of our own
    if len(parts) == 1:
        assert not PREFIX.match(parts[0])
    else:
        numbers = [PREFIX.match(part) for part in parts]
        assert all(numbers), parts
        assert [(int(m[1]), int(m[2])) for m in numbers if m] == [
            (index, len(parts)) for index in range(1, len(parts) + 1)
        ]
    joined = "".join(nonspace(content(part, fmt)) for part in parts)
    expected = nonspace(content(whole, fmt))
    if fmt == "html" and whole.count("<a ") > "".join(parts).count("<a "):
        # A link too long for the limit is written out as "text (url)": compare without those.
        for url in re.findall(r'<a href="([^"]*)">', whole):
            shown = f"({nonspace(html.unescape(url))})"
            joined, expected = joined.replace(shown, ""), expected.replace(shown, "")
    assert joined == expected
    return parts


# -- Markdown to AIM HTML --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
        ("*italic* and _italic_", "<i>italic</i> and <i>italic</i>"),
        ("***both***", "<b><i>both</i></b>"),
        ("**bold *and italic* inside**", "<b>bold <i>and italic</i> inside</b>"),
        ("snake_case_names and __init__ stay", "snake_case_names and <b>init</b> stay"),
        ("file_name_v2.txt", "file_name_v2.txt"),
        ("my_var and other_ thing", "my_var and other_ thing"),
        ("_start_ and (_in parens_)", "<i>start</i> and (<i>in parens</i>)"),
        ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
        ("**never closed", "**never closed"),
        ("\\*escaped\\* stars", "*escaped* stars"),
    ],
)
def test_emphasis(markdown: str, expected: str) -> None:
    assert markdown_to_aim_html(markdown) == expected


def test_inline_code_is_monospace_escaped_and_unformatted() -> None:
    assert markdown_to_aim_html("run `a < b && **c**` now") == (
        'run <font face="Courier New">a &lt; b &amp;&amp; **c**</font> now'
    )
    assert markdown_to_aim_html("``code with ` tick``") == (
        '<font face="Courier New">code with ` tick</font>'
    )


def test_fenced_code_block_keeps_lines_and_indentation() -> None:
    markdown = "Code:\n```python\ndef f(x):\n    return x * 2  # *no* _format_\n```\nafter"
    assert markdown_to_aim_html(markdown) == (
        'Code:<br><font face="Courier New">def f(x):<br>'
        "&nbsp; &nbsp; return x * 2 &nbsp;# *no* _format_</font><br>after"
    )


def test_unclosed_fence_runs_to_the_end() -> None:
    assert markdown_to_aim_html("```\n**a**\n<b>") == (
        '<font face="Courier New">**a**<br>&lt;b&gt;</font>'
    )


def test_links_only_for_web_and_mail() -> None:
    assert markdown_to_aim_html("[docs](https://example.com/a?b=1&c=2)") == (
        '<a href="https://example.com/a?b=1&amp;c=2">docs</a>'
    )
    assert markdown_to_aim_html("[mail me](mailto:bot@example.com)") == (
        '<a href="mailto:bot@example.com">mail me</a>'
    )
    assert markdown_to_aim_html("[click](javascript:alert(1))") == "[click](javascript:alert(1))"
    assert markdown_to_aim_html("[file](/etc/passwd)") == "[file](/etc/passwd)"


def test_link_url_cannot_break_out_of_the_attribute() -> None:
    out = markdown_to_aim_html('[x](https://e.com/"onclick="alert(1)) <https://e.com/"><b>>')
    assert out == (
        '<a href="https://e.com/&quot;onclick=&quot;alert(1)">x</a> '
        '<a href="https://e.com/&quot;">https://e.com/&quot;</a>&lt;b&gt;&gt;'
    )
    assert_well_formed(out)


def test_images_become_links_to_the_image() -> None:
    assert markdown_to_aim_html("![a cat](https://e.com/cat.png)") == (
        '<a href="https://e.com/cat.png">a cat</a>'
    )
    assert markdown_to_plain("![a cat](https://e.com/cat.png)") == "a cat (https://e.com/cat.png)"


def test_link_text_is_formatted_and_escaped() -> None:
    assert markdown_to_aim_html("[**a** & b](http://e.com)") == (
        '<a href="http://e.com"><b>a</b> &amp; b</a>'
    )


def test_bare_and_angle_urls_become_links_without_trailing_punctuation() -> None:
    assert markdown_to_aim_html("See https://e.com/x_(y). Or <https://e.com/z>!") == (
        'See <a href="https://e.com/x_(y)">https://e.com/x_(y)</a>. '
        'Or <a href="https://e.com/z">https://e.com/z</a>!'
    )
    assert markdown_to_aim_html("(see https://e.com/q)") == (
        '(see <a href="https://e.com/q">https://e.com/q</a>)'
    )
    assert markdown_to_aim_html("nohttps://e.com") == "nohttps://e.com"


def test_headings_are_bold_lines() -> None:
    assert markdown_to_aim_html("# Title\ntext\n\n### Sub *it* ###") == (
        "<b>Title</b><br>text<br><br><b>Sub <i>it</i></b>"
    )
    assert markdown_to_aim_html("Setext\n======\nbody") == "<b>Setext</b><br>body"
    assert markdown_to_aim_html("#hashtag") == "#hashtag"


def test_lists() -> None:
    markdown = "- one\n* two\n  + nested\n\n1. first\n2) second\n10. tenth"
    assert markdown_to_aim_html(markdown) == (
        "- one<br>- two<br>&nbsp; - nested<br><br>1. first<br>2. second<br>10. tenth"
    )


def test_block_quote_and_rule() -> None:
    assert markdown_to_aim_html("> quoted *text*\n> > deeper\n\n---\n\nend") == (
        "&gt; quoted <i>text</i><br>&gt; &gt; deeper<br><br>----------<br><br>end"
    )


def test_deep_quotes_and_lists_are_capped_not_recursed_into() -> None:
    out = markdown_to_aim_html(">" * 5000 + " deep")
    assert out.startswith("&gt; " * 8 + "&gt;" * 4992)
    assert out.endswith(" deep")
    nested = markdown_to_plain("\n".join(" " * n + "- x" for n in range(50)))
    assert nested.splitlines()[-1] == " " * 10 + "- x"


def test_tables_become_text_rows() -> None:
    markdown = "| Name | Value |\n|:-----|------:|\n| a | **1** |\n| b\\|c | 2 |"
    assert markdown_to_aim_html(markdown) == "Name | Value<br>a | <b>1</b><br>b|c | 2"


def test_paragraphs_and_line_breaks() -> None:
    assert markdown_to_aim_html("one\ntwo  \nthree\n\n\n\nnext\\\nline") == (
        "one<br>two<br>three<br><br>next<br>line"
    )


def test_raw_html_and_special_characters_are_escaped() -> None:
    markdown = "<script>alert(\"x\")</script> & <b>not bold</b> 'q'"
    assert markdown_to_aim_html(markdown) == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt; 'q'"
    )


def test_non_ascii_text_passes_through() -> None:
    markdown = "Grüße, **中文** 😀 👨‍👩‍👧 e\u0301"
    assert markdown_to_aim_html(markdown) == "Grüße, <b>中文</b> 😀 👨‍👩‍👧 e\u0301"


def test_bad_characters_are_cleaned_not_crashed_on() -> None:
    # A lone surrogate cannot be encoded as UCS-2; control characters would reach the window.
    assert markdown_to_aim_html("a\ud800b\x00c\x07\r\nd\r") == "a\ufffdbc<br>d"
    assert markdown_to_aim_html("\ud83d\ude00") == "😀"  # a split pair is put back together


# -- Markdown to plain text ------------------------------------------------------------------


def test_plain_removes_markers_and_writes_links_out() -> None:
    markdown = (
        "# Title\n**bold** _it_ `code` [docs](https://e.com) https://bare.org "
        "[https://same.org](https://same.org) <a@b.org>\n\n- item\n1. first\n> quote\n\n"
        "```\n  x = '<b>'\n```"
    )
    assert markdown_to_plain(markdown) == (
        "Title\nbold it code docs (https://e.com) https://bare.org https://same.org a@b.org"
        "\n\n- item\n1. first\n> quote\n\n  x = '<b>'"
    )


def test_plain_is_not_escaped() -> None:
    assert markdown_to_plain('<script>"&"</script>') == '<script>"&"</script>'


def test_render_reply_dispatches_and_rejects_unknown_formats() -> None:
    assert render_reply("**a**", "html") == "<b>a</b>"
    assert render_reply("**a**", "plain") == "a"
    with pytest.raises(ValueError, match="'html' or 'plain'"):
        render_reply("a", "rtf")  # type: ignore[arg-type]


# -- splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize("markdown", ["", "   ", "\n\n\t\n", "\u2028"])
@pytest.mark.parametrize("fmt", ["html", "plain"])
def test_empty_answer_gives_no_parts(markdown: str, fmt: ReplyFormat) -> None:
    assert split_reply(markdown, fmt, 512, im_size) == []


def test_limits_below_64_bytes_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 64, got 63"):
        split_reply("hi", "html", 63, im_size)
    assert MIN_MAX_BYTES == 64
    assert split_reply("hi", "html", 64, im_size) == ["hi"]


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="'html' or 'plain'"):
        split_reply("hi", "aim", 512, im_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["html", "plain"])
def test_a_reply_that_fits_is_one_unnumbered_part(fmt: ReplyFormat) -> None:
    markdown = "**Hi!** See [this](https://e.com)."
    assert split_reply(markdown, fmt, 512, im_size) == [render_reply(markdown, fmt)]


def test_split_between_paragraphs_first() -> None:
    first = " ".join(["alpha."] * 30).strip()
    second = " ".join(["beta."] * 30).strip()
    parts = check_parts(f"{first}\n\n{second}", "plain", 250)
    assert parts == [f"(1/2) {first}", f"(2/2) {second}"]


def test_then_between_lines() -> None:
    lines = [f"line {n} " + "word " * 8 for n in range(12)]
    parts = check_parts("\n".join(lines), "plain", 200)
    for part in parts:
        for line in without_prefix(part).split("\n"):
            assert line in {text.strip() for text in lines}


def test_then_between_sentences() -> None:
    sentences = [f"Sentence number {n} has a few words in it." for n in range(20)]
    parts = check_parts(" ".join(sentences), "html", 200)
    assert len(parts) > 2
    for part in parts:
        assert without_prefix(part).endswith(".")
        assert without_prefix(part).startswith("Sentence number ")


def test_then_between_words() -> None:
    words = [f"word{n}" for n in range(200)]
    parts = check_parts(" ".join(words), "html", 100)
    seen = [word for part in parts for word in without_prefix(part).split()]
    assert seen == words  # no word was cut


def test_a_paragraph_break_does_not_waste_a_mostly_empty_part() -> None:
    # A short first paragraph followed by a long one: cutting at the paragraph would send an
    # IM with one word in it, while the server rate-limits IMs.
    parts = check_parts("Hi.\n\n" + "Long words here. " * 40, "plain", 200)
    assert without_prefix(parts[0]).startswith("Hi.\n\nLong words here.")


def test_a_heading_stays_with_the_text_under_it() -> None:
    intro = "Intro words. " * 12
    body = "Body words. " * 12
    parts = check_parts(f"{intro}\n\n# Heading\n{body}", "plain", 250)
    assert [without_prefix(part).split("\n")[0] for part in parts] == [intro.strip(), "Heading"]


@pytest.mark.parametrize(
    "markdown",
    [
        "*a" * 2500,
        "_a_" * 1700,
        "[" * 5000,
        "[a](" * 1250,
        "[a](<" * 1000,
        "` `` ```" * 700,
        "https://e.com/" + ")" * 5000,
        "> " * 2500,
        "```\n" * 2000,
        "|a|\n|-|\n" * 1000,
        "a" + "\u0301" * 5000,
        "\u200d" * 5000,
        "🇩" * 5001,
        "**" * 2500,
    ],
    ids=lambda markdown: repr(markdown[:8]),
)
def test_hostile_markup_is_rendered_and_split(markdown: str) -> None:
    # Each of these once took seconds (quadratic rescans) or crashed (recursion).
    check_parts(markdown, "html", 512)
    check_parts(markdown, "plain", 512)


@pytest.mark.parametrize("fmt", ["html", "plain"])
@pytest.mark.parametrize(
    "cluster",
    ["x", "é", "e\u0301", "😀", "👨\u200d👩\u200d👧", "🇩🇪", "👍🏽", "中", "&"],
)
def test_a_huge_word_is_cut_between_characters_only(fmt: ReplyFormat, cluster: str) -> None:
    markdown = cluster * 600
    parts = check_parts(markdown, fmt, 100)
    assert len(parts) > 1
    for part in parts:
        body = content(part, fmt)
        assert body == cluster * (len(body) // len(cluster)), f"{cluster!r} cut in {part!r}"


def test_formatting_across_a_split_is_closed_and_reopened() -> None:
    markdown = "**" + " ".join(f"bold{n}" for n in range(80)) + "** tail"
    parts = check_parts(markdown, "html", 128)
    assert len(parts) > 3
    for part in parts[:-1]:
        assert without_prefix(part).startswith("<b>")
        assert part.endswith("</b>")
    assert parts[-1].endswith("</b> tail")


def test_links_across_a_split_keep_their_target() -> None:
    markdown = "[" + " ".join(f"w{n}" for n in range(60)) + "](https://e.com/p)"
    parts = check_parts(markdown, "html", 128)
    assert len(parts) > 2
    for part in parts:
        assert without_prefix(part).startswith('<a href="https://e.com/p">')
        assert part.endswith("</a>")


def test_code_blocks_split_at_line_boundaries() -> None:
    code = [f"    value_{n} = compute({n}) * 2" for n in range(40)]
    markdown = "Here:\n```\n" + "\n".join(code) + "\n```"
    parts = check_parts(markdown, "html", 300)
    assert len(parts) > 3
    shown = [line for part in parts for line in content(part, "html").split("\n")]
    assert shown[0] == "Here:"
    assert [line.replace("\xa0", " ") for line in shown[1:]] == code
    for part in parts[1:]:
        assert without_prefix(part).startswith('<font face="Courier New">&nbsp;')
        assert part.endswith("</font>")


@pytest.mark.parametrize("fmt", ["html", "plain"])
def test_parts_are_measured_as_sent_after_escaping(fmt: ReplyFormat) -> None:
    # "&" is 1 character but 5 bytes once escaped; measuring the unescaped text would make
    # every part about five times too long.
    markdown = "&&&& " * 300
    parts = check_parts(markdown, fmt, 100)
    assert sum(content(part, fmt).count("&") for part in parts) == 1200


def test_plain_parts_use_the_given_escape() -> None:
    def shout(text: str) -> str:  # a sender that quadruples every character
        return "".join(char * 4 for char in text)

    parts = split_reply("word " * 200, "plain", 200, im_size, escape=shout)
    assert len(parts) > 1
    assert all(im_size(shout(part)) <= 200 for part in parts)
    assert max(im_size(shout(part)) for part in parts) > 150


def test_numbering_widens_when_there_are_ten_parts_or_more() -> None:
    markdown = " ".join(f"ünïcode{n}" for n in range(150))
    parts = check_parts(markdown, "html", 64)
    assert len(parts) >= 10  # check_parts saw "(1/n) " .. "(n/n) ", each within 64 bytes
    assert parts[9].startswith(f"(10/{len(parts)}) ")


def test_formatting_that_cannot_fit_a_tiny_limit_is_dropped_not_cut_apart() -> None:
    # Bold-italic-code tags alone take 46 characters, 92 bytes once the text is UCS-2.
    markdown = "***`" + " ".join(f"ü{n}" for n in range(40)) + "`***"
    parts = check_parts(markdown, "html", 64)
    assert len(parts) < 40  # words are still packed together, not one per IM


def test_a_link_too_long_for_the_limit_is_written_out_as_text() -> None:
    url = "https://example.com/" + "a" * 200
    parts = check_parts(f"[see]({url}) ok", "html", 100)
    assert not any("<a " in part for part in parts)
    assert nonspace("".join(content(part, "html") for part in parts)) == f"see({url})ok"


def test_one_part_after_dropping_formatting_carries_no_number() -> None:
    markdown = "***`ü`***"
    assert im_size(markdown_to_aim_html(markdown)) > 64
    parts = split_reply(markdown, "html", 64, im_size)
    assert len(parts) == 1
    assert not PREFIX.match(parts[0])
    assert content(parts[0], "html") == "ü"


def mixed_answer() -> str:
    """About 5,000 characters of what LLM answers look like."""
    blocks: list[str] = []
    n = 0
    while sum(len(block) for block in blocks) < 5000:
        n += 1
        blocks += [
            f"## Step {n}: **setup** of the _thing_",
            (
                f"First we configure item {n}. It uses `config_{n}.yaml` and "
                f"[the docs](https://docs.example.com/step/{n}?a=1&b=2). Is it done? "
                "Not yet! Then we wait for https://status.example.com/ok to answer."
            ),
            "\n".join(f"- bullet {n}.{k} with *emphasis* and ünïcödé" for k in range(4)),
            "```bash\n" + "\n".join(f"  run --step {n} --part {k}" for k in range(5)) + "\n```",
            f"中文的句子很长，没有空格。第{n}步完成了！😀🎉 Emoji 👨‍👩‍👧 and flags 🇯🇵.",
            f"> Quote {n}: <script>alert('{n}')</script> & \"quotes\"",
            "| key | value |\n|---|---|\n| a | 1 |",
        ]
    return "\n\n".join(blocks)


@pytest.mark.parametrize("fmt", ["html", "plain"])
def test_a_5000_character_answer(fmt: ReplyFormat) -> None:
    markdown = mixed_answer()
    assert len(markdown) >= 5000
    parts = check_parts(markdown, fmt, 512)
    assert len(parts) > 5
    expected_words = content(render_reply(markdown, fmt), fmt).split()
    seen_words = [word for part in parts for word in content(part, fmt).split()]
    # Every word comes back once and in order; only CJK runs (no spaces, every character a
    # word) may be cut between characters, which check_parts covered character by character.
    assert [w for w in seen_words if w.isascii()] == [w for w in expected_words if w.isascii()]
    # Parts fill the limit: none is under a third full except the last.
    assert all(im_size(as_sent(part, fmt)) > 512 // 3 for part in parts[:-1])


def test_splitting_measures_a_bounded_amount_of_text() -> None:
    # No quadratic re-measuring: the total text handed to measure() stays a small multiple of
    # the reply (binary search per part), not reply length times part count (~100 here).
    markdown = "\n\n".join([mixed_answer()] * 4)
    measured: list[int] = []

    def counting_size(text: str) -> int:
        measured.append(len(text))
        return im_size(text)

    parts = split_reply(markdown, "html", 512, counting_size)
    total = len(markdown_to_aim_html(markdown))
    assert len(parts) > 100
    assert sum(measured) < 15 * total
    assert len(measured) < 15 * len(parts)


# -- properties ------------------------------------------------------------------------------

MARKDOWN_BITS = st.sampled_from(
    [
        "**", "__", "*", "_", "`", "```\n", "\n```", "[a](https://e.com/x)", "[b](ftp://x)",
        "https://e.org/p.", "<https://e.com>", "\n", "\n\n", "- ", "1. ", "> ", "# ", "| a | b |",
        "\n|---|---|\n", "---", "&", "<", ">", '"', "    ", "😀", "👨\u200d👩\u200d👧", "e\u0301",
        "中文。", "\ud800", "🇩🇪", "\\", "\t",
    ]
)  # fmt: skip
ANY_CHARACTER = st.characters(exclude_categories=())  # includes lone surrogates and controls
ANSWERS = st.lists(
    st.one_of(MARKDOWN_BITS, st.text(ANY_CHARACTER, max_size=12), st.just(" word")),
    max_size=60,
).map("".join)


@given(markdown=ANSWERS, max_bytes=st.integers(64, 2544), fmt=st.sampled_from(["html", "plain"]))
@example(markdown="👨\u200d👩\u200d👧" * 40, max_bytes=64, fmt="html")
@example(markdown="a\u0301" * 200, max_bytes=64, fmt="plain")
@example(markdown="***`" + "é " * 100 + "`***", max_bytes=64, fmt="html")
def test_any_answer_splits_within_the_limit_without_losing_text(
    markdown: str, max_bytes: int, fmt: ReplyFormat
) -> None:
    check_parts(markdown, fmt, max_bytes)


# Characters Markdown leaves alone, so the parts must hold exactly the input's characters.
PROSE = st.text(
    st.one_of(
        st.characters(
            exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp"),
            exclude_characters="\\`*_[]<>#-+=|~!&\"'()0123456789",
        ),
        st.sampled_from(list(" \n.,?😀中")),
    ),
    max_size=600,
)


@given(markdown=PROSE, max_bytes=st.integers(64, 2544), fmt=st.sampled_from(["html", "plain"]))
def test_prose_keeps_every_character_in_order(
    markdown: str, max_bytes: int, fmt: ReplyFormat
) -> None:
    parts = check_parts(markdown, fmt, max_bytes)
    assert "".join(nonspace(content(part, fmt)) for part in parts) == nonspace(markdown)


def test_reasoning_blocks_are_not_sent_to_users() -> None:
    from aimbot.bot.text import strip_reasoning

    assert strip_reasoning("<think>hmm, the user wants</think>\n\nHello!") == "Hello!"
    details = '<details style="color:gray" open> <summary> Thinking... </summary>x</details>Hi'
    assert strip_reasoning(details) == "Hi"
    assert strip_reasoning("<THINK>never closed") == ""
    assert strip_reasoning("Use <b> tags and think about it") == "Use <b> tags and think about it"


@given(
    text=st.text(
        alphabet=st.sampled_from(list("abwhtpXYZ019 ,.;:!?'\"()%$=+/-")), min_size=1, max_size=300
    ),
    fmt=st.sampled_from(["html", "plain"]),
    max_bytes=st.integers(64, 600),
)
@example(text="see http://example.com now", fmt="html", max_bytes=512)
@example(text="- item", fmt="html", max_bytes=512)
@example(text="--- x", fmt="plain", max_bytes=512)
@example(text="well-known a/b 1-2", fmt="html", max_bytes=512)
@example(text="tp0001-m5", fmt="html", max_bytes=512)
def test_the_plain_prose_fast_path_matches_the_full_pipeline(
    text: str, fmt: ReplyFormat, max_bytes: int
) -> None:
    from aimbot.bot.text import _split_markdown

    full = _split_markdown(text, fmt == "html", max_bytes, im_size, plain_escape)
    assert split_reply(text, fmt, max_bytes, im_size, escape=plain_escape) == full


# -- issue 13: the "(answer cut short)" note is never swallowed by the answer's code block -----


@pytest.mark.parametrize(
    "answer",
    [
        "Here:\n```python\nprint(1)",  # cut inside a fenced block
        "~~~~",
        "   ~~~ info\ncode\n~~\nmore code",  # a shorter "closing" fence does not close
        "```\ncode\n```\nafter",  # closed: nothing to close
        "> quote\n> ```\n> code",
    ],
)
def test_a_note_after_a_cut_answer_is_its_own_paragraph_not_code(answer: str) -> None:
    note = "(answer cut short)"
    html = markdown_to_aim_html(with_note(answer, note))
    plain = markdown_to_plain(with_note(answer, note))
    assert html.endswith(note) and plain.rstrip().endswith(note)
    assert "Courier" not in html.rsplit("<br>", 1)[-1]
