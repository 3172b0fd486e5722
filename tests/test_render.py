"""Markdown to Slack mrkdwn, and splitting mrkdwn into messages that fit Slack's limit."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.slack.render import MIN_LIMIT, markdown_to_mrkdwn, render_reply, split_message

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A link the converter made: its target always starts with a scheme, so never @, ! or #.
CONVERTER_LINK = re.compile(r"<[A-Za-z][A-Za-z0-9+.-]*:[^<>|\s]*(?:\|[^<>]*)?>")
QUOTE_MARKERS = re.compile(r"^(?:>(?: |$))+", re.MULTILINE)
FENCE = "```"


# markdown_to_mrkdwn: what the library does, through our wrapper


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("# Title", "*Title*"),
        ("### Title ###", "*Title*"),
        ("# **Bold** title", "*Bold title*"),
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("***both***", "*_both_*"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("~~gone~~", "~gone~"),
        ("- a\n  - b\n* c", "• a\n  • b\n• c"),
        ("1. one\n2. **two**", "1. one\n2. *two*"),
        ("- [ ] todo\n- [x] done", "• ☐ todo\n• ☑ done"),
        ("---", "──────────"),
        ("[text](https://example.com)", "<https://example.com|text>"),
        ("[**Docs**](https://d.example)", "<https://d.example|*Docs*>"),
        ("| **Name** | Age |\n|---|---|\n| **Bob** | 3 |", "*Name* | *Age*\n*Bob* | 3"),
        ("> quoted\n> - item", "> quoted\n> • item"),
        ("> a\n>\n> **b**", "> a\n>\n> *b*"),
        # Slack cannot nest quotes.
        ("> > nested\n> back", "> nested\n> back"),
        ("one\n\n\n\ntwo", "one\n\ntwo"),
        ("", ""),
        ("  \n ", ""),
    ],
)
def test_converts_markdown_formatting(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


# Slack's escaping: & < > in text, but the entities the converter makes stay entities


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("x -> y", "x -&gt; y"),
        ("[t](https://x.com/?a=1&b=2)", "<https://x.com/?a=1&amp;b=2|t>"),
        ("[a < b](https://x.com)", "<https://x.com|a &lt; b>"),
        ("<https://x.com/?a&b>", "<https://x.com/?a&amp;b>"),
        ("<ann@example.com>", "<mailto:ann@example.com|ann@example.com>"),
        ("see https://x.com/?a=1&b=2.", "see https://x.com/?a=1&amp;b=2."),
        # The model cannot ping people or channels: what looks like a Slack entity is text.
        ("Hi <@U123> <!channel> <#C1>", "Hi &lt;@U123&gt; &lt;!channel&gt; &lt;#C1&gt;"),
        ("<https://evil.example|https://good.example>", "<https://evil.example%7Chttps://good.example>"),
        ("> a > b", "> a &gt; b"),
        ("\\<b\\>", "&lt;b&gt;"),
    ],
)
def test_escapes_text_but_not_its_own_entities(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[w](https://en.wikipedia.org/wiki/Foo_(bar))", "<https://en.wikipedia.org/wiki/Foo_(bar)|w>"),
        ('[t](https://x.com "Title")', "<https://x.com|t>"),
        ("[t](<https://x.com/a b>)", "<https://x.com/a%20b|t>"),
        ("[t](www.example.com)", "<http://www.example.com|t>"),
        ("![diagram](https://x.com/d.png)", "<https://x.com/d.png|diagram>"),
        ("[](https://x.com)", "<https://x.com>"),
        # Relative links and anchors lead nowhere from Slack, and <#...> would mean a channel.
        ("[the docs](/docs/setup) and [above](#setup)", "the docs and above"),
        ("[not a link] (x)", "[not a link] (x)"),
        ("[[1, 2], [3]] and [a]", "[[1, 2], [3]] and [a]"),
        ("see https://x.com/a__b__c", "see https://x.com/a__b__c"),
    ],
)
def test_converts_links(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("`a*b*c` and `**x**`", "`a*b*c` and `**x**`"),
        ("`[t](u)` and `~~x~~` and `__init__`", "`[t](u)` and `~~x~~` and `__init__`"),
        ("`if a < b && c:`", "`if a &lt; b &amp;&amp; c:`"),
        ("## Use `co*de*`", "*Use `co*de*`*"),
        ("`` a`b ``", "``a`b``"),
        ("\\*not emphasis\\* \\_x\\_", "*not emphasis* _x_"),
    ],
)
def test_code_spans_stay_verbatim(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("```python\nx = a*b*c  # **not bold**\n```", "```\nx = a*b*c  # **not bold**\n```"),
        ("```\nif a < b && c > d:\n    pass\n```", "```\nif a &lt; b &amp;&amp; c &gt; d:\n    pass\n```"),
        ("~~~\n[t](u) # x\n~~~", "```\n[t](u) # x\n```"),
        ("````md\n```\ninner\n```\n````", "```\n```\ninner\n```\n```"),
        (
            "1. Run:\n\n    ```bash\n    make && make test\n      indented\n    ```\n2. Done",
            "1. Run:\n\n```\nmake &amp;&amp; make test\n  indented\n```\n2. Done",
        ),
        ("Intro:\n\n```\ncode\n```\n\nAfter **it**", "Intro:\n\n```\ncode\n```\n\nAfter *it*"),
        ("```\n\n```", ""),
    ],
)
def test_fenced_code_stays_verbatim(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
        ("a * b and *c*", "a * b and _c_"),
        ("foo__bar__baz and __init__", "foo__bar__baz and *init*"),
        ("**Note:** read this", "*Note:* read this"),
    ],
)
def test_emphasis_markers_that_cannot_pair_stay_literal(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


# While an answer streams the Markdown is cut off anywhere


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("Here:\n```python\nprint('x')", "Here:\n```\nprint('x')\n```"),
        ("Here:\n```py", "Here:"),
        ("This is **bol", "This is **bol"),
        ("**bol and **x**", "**bol and *x*"),
        ("**bol and *it* and [l](https://x.com)", "**bol and _it_ and <https://x.com|l>"),
        ("**bol\n\nNext *it* and **b**", "**bol\n\nNext _it_ and *b*"),
        ("Use `foo", "Use `foo"),
        ("See [the docs](https://x.com/do", "See [the docs](https://x.com/do"),
        ("| a | b |\n|---", "| a | b |\n|---"),
    ],
)
def test_partial_markdown_renders_sensibly(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_long_and_deeply_nested_input_converts() -> None:
    assert markdown_to_mrkdwn("> \t" * 3000 + "x") == "> x"
    assert markdown_to_mrkdwn("[a](" * 3000) == "[a](" * 3000


def assert_only_converter_entities(mrkdwn: str) -> None:
    """The only < and > Slack sees are links the converter made and quote markers."""
    rest = QUOTE_MARKERS.sub("", CONVERTER_LINK.sub("", mrkdwn))
    assert "<" not in rest
    assert ">" not in rest


@PROPERTY_SETTINGS
@given(st.text())
def test_conversion_never_fails_and_leaves_no_raw_angle_brackets(markdown: str) -> None:
    assert_only_converter_entities(markdown_to_mrkdwn(markdown))


MARKDOWN_PIECES = st.sampled_from(
    [
        "word",
        "**bold**",
        "*it*",
        "_it_",
        "~~x~~",
        "`co*de`",
        "a & b",
        "x < y",
        "**",
        "*",
        "__",
        "[link](https://x.com/a_(b))",
        "<https://x.com>",
        "# ",
        "- ",
        "> ",
        "1. ",
        "| a | b |",
        "|---|---|",
        "```",
        "```python",
        "~~~",
        "    ",
        " ",
        "\n",
        "\n\n",
        "<@U1>",
        "\\*",
        "\ue000",
    ]
)


@PROPERTY_SETTINGS
@given(st.lists(MARKDOWN_PIECES, max_size=40).map("".join))
def test_conversion_of_markdown_pieces_keeps_entities_safe(markdown: str) -> None:
    mrkdwn = markdown_to_mrkdwn(markdown)
    assert_only_converter_entities(mrkdwn)
    # The private-use characters that stand for held fragments never leak into the output.
    assert "\ue000" not in mrkdwn or "\ue000" in markdown


# split_message


def content(text: str) -> str:
    """Non-whitespace text with fences removed: what splitting must keep, in order.

    Whitespace goes first so that an added fence next to a real backtick run merges with it
    the same way in the input and the chunks; removing ``` then leaves runs of equal length mod 3.
    """
    return "".join(text.split()).replace(FENCE, "")


def assert_valid_split(text: str, chunks: list[str], limit: int) -> None:
    for chunk in chunks:
        assert chunk.strip(), chunks
        assert len(chunk) <= limit, (len(chunk), chunk)
        assert chunk.count(FENCE) % 2 == 0, chunk
    assert content("".join(chunks)) == content(text)


def assert_earlier_chunks_kept(before: list[str], after: list[str]) -> None:
    """All chunks but the last of a text are the first chunks of that text with more appended."""
    earlier = before[:-1]
    assert after[: len(earlier)] == earlier


def test_short_text_is_one_chunk() -> None:
    assert split_message("  Hello *world*  \n", limit=100) == ["Hello *world*"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_empty_text_has_no_chunks(text: str) -> None:
    assert split_message(text, limit=100) == []


def test_limit_below_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("text", limit=MIN_LIMIT - 1)


def test_prefers_paragraph_breaks() -> None:
    text = "First paragraph here.\nStill first.\n\nSecond paragraph. With sentences."
    assert split_message(text, limit=50) == ["First paragraph here.\nStill first.", "Second paragraph. With sentences."]


def test_prefers_newlines_over_sentences() -> None:
    text = "Line one. More of line one\nline two. More of line two"
    assert split_message(text, limit=40) == ["Line one. More of line one", "line two. More of line two"]


def test_prefers_sentence_ends_over_spaces() -> None:
    text = "This is a sentence. And then another one follows"
    assert split_message(text, limit=30) == ["This is a sentence.", "And then another one follows"]


def test_sentence_end_may_be_followed_by_closing_marks() -> None:
    text = 'He said "stop." (Really!) Then we all went home for the day'
    assert split_message(text, limit=30)[0] == 'He said "stop." (Really!)'


def test_splits_at_spaces_then_hard_cuts() -> None:
    assert split_message("aaaa bbbb cccc dddd eeee", limit=16) == ["aaaa bbbb cccc", "dddd eeee"]
    assert split_message("x" * 40, limit=16) == ["x" * 16, "x" * 16, "x" * 8]


def test_does_not_make_tiny_chunks_for_a_stronger_boundary() -> None:
    text = "Hi.\n\n" + " ".join(["word"] * 20)
    chunks = split_message(text, limit=60)
    assert chunks[0].startswith("Hi.\n\nword word")


def test_closes_and_reopens_code_blocks() -> None:
    code = "\n".join(f"line_{n} = {n}" for n in range(8))
    text = f"Code:\n```\n{code}\n```\nDone."
    chunks = split_message(text, limit=60)
    assert chunks == [
        "Code:\n```\nline_0 = 0\nline_1 = 1\nline_2 = 2\nline_3 = 3\n```",
        "```\nline_4 = 4\nline_5 = 5\nline_6 = 6\nline_7 = 7\n```\nDone.",
    ]
    assert_valid_split(text, chunks, 60)


def test_keeps_indentation_of_code_after_a_split() -> None:
    text = "```\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n```"
    chunks = split_message(text, limit=34)
    assert chunks == ["```\ndef f():\n    return 1\n```", "```\ndef g():\n    return 2\n```"]


def test_prefers_to_keep_a_code_block_whole() -> None:
    text = "Some introduction text here.\n\n```\nline one\n\nline two\n```"
    assert split_message(text, limit=45) == ["Some introduction text here.", "```\nline one\n\nline two\n```"]


def test_never_ends_a_chunk_with_an_empty_code_block() -> None:
    text = "Text before the code\n```\nabc def ghi\n```"
    for chunk in split_message(text, limit=26):
        assert not chunk.endswith("```\n```")


def test_closes_an_unclosed_code_block() -> None:
    assert split_message("```\ncode", limit=100) == ["```\ncode\n```"]


@pytest.mark.parametrize(
    "entity", ["<https://example.com/path|a label with spaces>", "<@U12345678>", "&amp;", "<!subteam^S1|@team>"]
)
def test_does_not_split_slack_entities(entity: str) -> None:
    for padding in range(30):
        text = "x" * padding + " " + entity + " tail words here"
        chunks = split_message(text, limit=max(MIN_LIMIT, len(entity) + 2))
        assert any(entity in chunk for chunk in chunks), (padding, chunks)


def test_cuts_an_entity_longer_than_a_message() -> None:
    entity = "<https://example.com/" + "a" * 40 + "|label>"
    chunks = split_message(entity, limit=20)
    assert_valid_split(entity, chunks, 20)


def test_render_reply_converts_then_splits() -> None:
    markdown = "# Result\n\nThe **answer** is in [the docs](https://x.com/?a=1&b=2).\n\n" + "More text. " * 10
    chunks = render_reply(markdown, limit=80)
    assert chunks[0] == "*Result*\n\nThe *answer* is in <https://x.com/?a=1&amp;b=2|the docs>."
    assert_valid_split(markdown_to_mrkdwn(markdown), chunks, 80)


def test_render_reply_of_nothing_is_nothing() -> None:
    assert render_reply("", limit=100) == []


MRKDWN_TOKENS = st.sampled_from(
    [
        "word",
        "a",
        "longerwordhere",
        "end.",
        "stop!",
        '"quote."',
        "(aside)",
        "`co de`",
        "*bold*",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\n",
        "\n\n",
        "\t",
        "    ",
        "```",
        "```\n",
        "\n```\n",
        "<https://example.com/x|a link label>",
        "<@U1234>",
        "<#C1|general>",
        "&amp;",
        "&lt;",
        "x" * 25,
        "•",
        "> ",
    ]
)
LIMITS = st.integers(min_value=MIN_LIMIT, max_value=120)


@PROPERTY_SETTINGS
@given(st.text(), LIMITS)
def test_split_of_any_text_is_valid(text: str, limit: int) -> None:
    assert_valid_split(text, split_message(text, limit=limit), limit)


@PROPERTY_SETTINGS
@given(st.lists(MRKDWN_TOKENS, max_size=80).map("".join), LIMITS)
def test_split_of_mrkdwn_is_valid(text: str, limit: int) -> None:
    assert_valid_split(text, split_message(text, limit=limit), limit)


@PROPERTY_SETTINGS
@given(st.lists(MRKDWN_TOKENS, max_size=80).map("".join), st.integers(min_value=46, max_value=120))
def test_split_keeps_entities_whole_when_they_fit(text: str, limit: int) -> None:
    # Every entity here is at most limit - 8 long, so there is always room to keep it whole.
    for chunk in split_message(text, limit=limit):
        assert re.fullmatch(r"(?:[^<]|<[^<>]*>)*", chunk), chunk
        assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt);)*", chunk), chunk


@PROPERTY_SETTINGS
@given(st.text(), LIMITS)
def test_split_is_deterministic(text: str, limit: int) -> None:
    assert split_message(text, limit=limit) == split_message(text, limit=limit)


@PROPERTY_SETTINGS
@given(st.lists(MRKDWN_TOKENS, max_size=80), st.data(), LIMITS)
def test_split_is_stable_when_text_is_appended(tokens: list[str], data: st.DataObject, limit: int) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(tokens)))
    streamed, appended = "".join(tokens[:cut]), "".join(tokens[cut:])
    # The one case where the split point moves into the appended text: a backtick arriving right
    # after the streamed text can close its open code block (or merge into a fence), and a block
    # that no longer needs an added closing fence can take a few more characters into its message.
    assume(not appended.startswith("`"))
    before = split_message(streamed, limit=limit)
    after = split_message(streamed + appended, limit=limit)
    assert_earlier_chunks_kept(before, after)


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.sampled_from("ab .!?\n\t"), max_size=400), st.data(), LIMITS)
def test_split_of_prose_is_stable_wherever_the_stream_stops(text: str, data: st.DataObject, limit: int) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    before = split_message(text[:cut], limit=limit)
    after = split_message(text, limit=limit)
    assert_earlier_chunks_kept(before, after)


@PROPERTY_SETTINGS
@given(st.text(), st.integers(min_value=MIN_LIMIT, max_value=300))
def test_render_reply_of_any_text_fits(markdown: str, limit: int) -> None:
    chunks = render_reply(markdown, limit=limit)
    assert_valid_split(markdown_to_mrkdwn(markdown), chunks, limit)


STREAMED_ANSWER = """# Deploying the service

Deploying takes **three steps**. Each one is safe to repeat, and none of them needs downtime.

1. Build the image:

    ```bash
    docker build -t app:latest .
    docker push registry.example.com/app:latest
    ```

2. Run the migrations with `alembic upgrade head`. They are *idempotent*.
3. Roll out: see [the runbook](https://wiki.example.com/runbook?team=ops&env=prod).

| Step | Time |
|---|---|
| Build | 2 min |
| Roll out | 5 min |

> **Note:** if a step fails, run it again & check the logs < 5 minutes later.

That is all there is to it. Ask me if anything is unclear!
"""


def test_streamed_answer_only_ever_updates_its_last_message() -> None:
    final = render_reply(STREAMED_ANSWER, limit=200)
    assert len(final) > 2
    cuts = [index for index, character in enumerate(STREAMED_ANSWER) if character == " "]
    moved = []
    for cut in cuts:
        shown = render_reply(STREAMED_ANSWER[:cut], limit=200)
        if final[: len(shown[:-1])] != shown[:-1]:
            moved.append(STREAMED_ANSWER[:cut][-30:])
    assert moved == []
