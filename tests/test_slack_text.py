"""Reading Slack message text: mentions, and Slack markup turned into plain text for the assistant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.text import mentioned_user_ids, strip_mention, to_plain_text

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
BOT = "UBOT1"
NAMES = {"U1": "Ann Lee", "U2": "Bo", "U3": "R&amp;D &lt;3"}


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("<@UBOT1> what is up?", "what is up?"),
        ("<@UBOT1|assistant> what is up?", "what is up?"),
        ("<@UBOT1>: what is up?", "what is up?"),
        ("<@UBOT1>, what is up?", "what is up?"),
        ("hey <@UBOT1> what is up?", "hey what is up?"),
        ("hey <@UBOT1>, what is up?", "hey, what is up?"),
        ("thanks <@UBOT1>.", "thanks."),
        ("what is up <@UBOT1>", "what is up"),
        ("  <@UBOT1>   <@UBOT1>  hi", "hi"),
        ("ask <@U1> and <@UBOT1>", "ask <@U1> and"),
        ("<@U1> <@UBOT1> hi", "<@U1> hi"),
        ("<@UBOT1>\n```\n    indented code\n```", "```\n    indented code\n```"),
        ("line one\n<@UBOT1> line two", "line one\nline two"),
        ("spaces   inside  stay", "spaces   inside  stay"),
        ("<@UBOT1>", ""),
        ("<@UBOT10> is another user", "<@UBOT10> is another user"),
    ],
)
def test_strip_mention(text: str, stripped: str) -> None:
    assert strip_mention(text, BOT) == stripped


def test_mentioned_user_ids_are_unique_and_in_order() -> None:
    text = "<@U2> asked <@U1|ann> and <@U2> about <#C1|general> and <!here>"
    assert mentioned_user_ids(text) == ["U2", "U1"]
    assert mentioned_user_ids("no mentions & no entities") == []


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("<@U1> and <@U2>", "@Ann Lee and @Bo"),
        ("<@U9> is unknown", "@U9 is unknown"),
        ("<@U3> &amp; co", "@R&amp;D &lt;3 & co"),
        ("<@U9|old-name> has a legacy label", "@old-name has a legacy label"),
        ("see <#C123|general> or <#C9>", "see #general or #C9"),
        ("<!here> <!channel> <!everyone> <!here|here>", "@here @channel @everyone @here"),
        ("<!subteam^S123|@team> and <!subteam^S9>", "@team and @S9"),
        ("<!date^1392734382^{date_short}|Feb 18, 2014>", "Feb 18, 2014"),
        ("<https://x.com|the site>", "the site (https://x.com)"),
        ("<https://x.com>", "https://x.com"),
        ("<http://x.com|x.com>", "http://x.com"),
        ("<mailto:a@b.c|a@b.c>", "a@b.c"),
        ("<mailto:a@b.c|Ann>", "Ann (a@b.c)"),
        ("<https://x.com/?a=1&amp;b=2|Q &amp; A>", "Q & A (https://x.com/?a=1&b=2)"),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
        ("&amp;lt; stays escaped once", "&lt; stays escaped once"),
        ("a < b > c", "a < b > c"),
        ("", ""),
    ],
)
def test_to_plain_text(text: str, plain: str) -> None:
    assert to_plain_text(text, user_names=NAMES) == plain


def unescape(text: str) -> str:
    """Slack's unescaping, done the slow way: one left-to-right pass over the three entities."""
    out = []
    index = 0
    while index < len(text):
        for entity, character in (("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            if text.startswith(entity, index):
                out.append(character)
                index += len(entity)
                break
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


@PROPERTY_SETTINGS
@given(st.text(), st.dictionaries(st.text(min_size=1), st.text()))
def test_to_plain_text_never_fails(text: str, names: dict[str, str]) -> None:
    assert isinstance(to_plain_text(text, user_names=names), str)


@PROPERTY_SETTINGS
@given(
    st.text(alphabet=st.characters(blacklist_characters="<>"))
    | st.lists(st.sampled_from(["&amp;", "&lt;", "&gt;", "&", "amp;", "a", " ", "@U1", "#C1", "!here", "|"])).map(
        "".join
    )
)
def test_text_without_entities_is_only_unescaped(text: str) -> None:
    assert to_plain_text(text, user_names=NAMES) == unescape(text)


def words(text: str) -> str:
    """What strip_mention keeps: all but whitespace and the , or : that may go with a mention."""
    return "".join(character for character in text if not character.isspace() and character not in ",:")


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(["<@UBOT1>", "<@U1>", "hi", " ", "  ", "\n", ",", ":", "."]), max_size=20).map("".join))
def test_strip_mention_removes_every_mention_of_the_bot_and_nothing_else(text: str) -> None:
    stripped = strip_mention(text, BOT)
    assert words(stripped) == words(text.replace("<@UBOT1>", ""))
    assert mentioned_user_ids(stripped) == [user for user in mentioned_user_ids(text) if user != BOT]
    assert stripped == stripped.strip()
