"""Property-based proofs: any event through the signed endpoint, any text through mentions, Markdown and splitting."""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.slack_view import bot_texts
from support.workspace import BOT, CHANNEL, DM

from bot.slack.render import MIN_LIMIT, markdown_to_mrkdwn, render_reply
from bot.slack.text import mentioned_user_ids, strip_mention, to_plain_text

SLACK_TEXT_LIMIT = 40_000  # chat.postMessage truncates longer text
# Each example delivers over HTTP to a running bot (on each backend), so far fewer than the pure-function properties.
DELIVERY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
NOT_A_STRING = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.lists(JSON_SCALARS, max_size=2)
    | st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=2)
)
NON_USER_SUBTYPES = st.sampled_from(
    [
        "bot_message",
        "message_changed",
        "message_deleted",
        "message_replied",
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "pinned_item",
        "tombstone",
        "ekm_access_denied",
        "assistant_app_thread",
        "huddle_thread",
        "some_future_subtype",
    ]
)


def slack_escaped(text: str) -> str:
    """Text as Slack delivers what a person typed: &, < and > escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alphanumerics(text: str) -> str:
    return "".join(character for character in text if character.isalnum())


# A Markdown link's target, which Slack cannot follow unless it is an address (the label stays).
LINK_TARGET = re.compile(r"\]\((?:[^()]|\([^()]*\))*\)")
# A code fence's info string ("```python") names the language; Slack has no place to show it.
FENCE_INFO = re.compile(r"^([ \t]*(?:`{3,}|~{3,}))[^\n]*", re.MULTILINE)


def readable(markdown: str) -> str:
    """The letters and digits of Markdown that a person must find again in Slack."""
    return alphanumerics(FENCE_INFO.sub(r"\1", LINK_TARGET.sub("]", markdown)))


def is_subsequence(needle: str, haystack: str) -> bool:
    remaining = iter(haystack)
    return all(character in remaining for character in needle)


# Event parsing through the real signed HTTP endpoint -------------------------------------------


@st.composite
def non_user_events(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A well-signed envelope Slack might send that is not a person saying something new."""
    envelope = copy.deepcopy(base)
    envelope["event_id"] = "Ev" + draw(st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=8, max_size=12))
    event = envelope["event"]
    for key in draw(st.lists(st.text(max_size=8), max_size=3)):  # unknown fields must be harmless
        event.setdefault(key, draw(JSON_VALUES))
    disqualifier = draw(st.sampled_from(["subtype", "bot_id", "own_user", "missing", "wrong_type", "envelope"]))
    if disqualifier == "subtype":
        event["subtype"] = draw(NON_USER_SUBTYPES)
    elif disqualifier == "bot_id":
        event["bot_id"] = draw(st.text(min_size=1, max_size=12))
    elif disqualifier == "own_user":
        event["user"] = BOT
    elif disqualifier == "missing":
        for key in draw(st.lists(st.sampled_from(["user", "channel", "ts"]), min_size=1, unique=True)):
            event.pop(key)
    elif disqualifier == "wrong_type":
        event[draw(st.sampled_from(["user", "channel", "ts"]))] = draw(NOT_A_STRING)
    else:
        envelope_mutation = draw(st.sampled_from(["type", "no_event", "event_not_object", "no_event_id"]))
        if envelope_mutation == "type":
            envelope["type"] = draw(st.sampled_from(["app_rate_limited", "url_verification_x", "", "event"]))
        elif envelope_mutation == "no_event":
            del envelope["event"]
        elif envelope_mutation == "event_not_object":
            envelope["event"] = draw(NOT_A_STRING)
        else:
            del envelope["event_id"]
    return envelope


async def test_no_malformed_or_non_user_event_crashes_the_endpoint_or_gets_an_answer(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    at_start = len(openai_double.requests)  # the start-up check of the API's routes
    bases = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> a real question").envelopes
    loop = asyncio.get_running_loop()
    statuses: list[int] = []

    @DELIVERY_SETTINGS
    @given(st.sampled_from(bases).flatmap(non_user_events))
    def delivered(envelope: dict[str, Any]) -> None:
        response = asyncio.run_coroutine_threadsafe(bot.deliver(envelope), loop).result(timeout=60)
        statuses.append(response.status_code)
        assert response.status_code < 500, (response.status_code, envelope)

    # Hypothesis drives synchronously from a thread; the bot keeps serving on this loop meanwhile.
    await asyncio.to_thread(delivered)
    await bot.settle()
    assert statuses
    assert openai_double.requests[at_start:] == []
    assert [call.method for call in slack_double.calls if call.method.startswith("chat.")] == []


async def test_any_text_a_person_sends_is_answered_once_in_valid_messages_with_nothing_lost(
    start_bot, slack_double, openai_double
) -> None:
    limit = 400
    bot = await start_bot(max_message_chars=limit, user_rate_limit=1000)
    loop = asyncio.get_running_loop()

    async def ask(text: str) -> list[str]:
        post = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> {slack_escaped(text)}")
        for envelope in post.envelopes:
            assert (await bot.deliver(envelope)).status_code == 200
        await bot.settle()
        return [message["text"] for message in slack_double.bot_messages(CHANNEL, thread_ts=post.ts)]

    @settings(DELIVERY_SETTINGS, max_examples=30)
    @given(st.text(min_size=1, max_size=1200).filter(lambda text: text.strip()))
    def answered(text: str) -> None:
        shown = asyncio.run_coroutine_threadsafe(ask(text), loop).result(timeout=120)
        assert shown, "no answer"
        assert all(message.strip() and len(message) <= limit for message in shown), shown
        assert is_subsequence(readable(text), alphanumerics("".join(shown))), (text, shown)

    await asyncio.to_thread(answered)


# Mention resolution -------------------------------------------------------------------------------

USER_IDS = st.sampled_from(["U0ADA", "U0BOB", BOT, "W0GUEST", "U0UNKNOWN"])
NAMES = {"U0ADA": "Ada", "U0BOB": "Bob", BOT: "Assistant", "W0GUEST": "Guest"}
WORDS = st.text(alphabet=st.characters(blacklist_characters="<>&|"), min_size=1, max_size=12)


@st.composite
def slack_texts(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """Slack text of words and mentions, with the words and the mentioned ids in order."""
    pieces, words, mentioned = [], [], []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        if draw(st.booleans()):
            user = draw(USER_IDS)
            label = draw(st.none() | st.just("old-name"))
            pieces.append(f"<@{user}|{label}>" if label else f"<@{user}>")
            mentioned.append(user)
        else:
            word = draw(WORDS)
            pieces.append(slack_escaped(word))
            words.append(word)
        pieces.append(draw(st.sampled_from([" ", "", ", ", ": ", "\n", "  "])))
    return "".join(pieces), words, mentioned


@PROPERTY_SETTINGS
@given(slack_texts())
def test_mentions_resolve_to_names_and_keep_every_word(case: tuple[str, list[str], list[str]]) -> None:
    text, words, mentioned = case
    plain = to_plain_text(strip_mention(text, BOT), user_names=NAMES)
    assert "<@" not in plain
    others = [user for user in mentioned if user != BOT]
    for user in others:
        assert f"@{NAMES.get(user, 'old-name')}" in plain or f"@{user}" in plain
    assert is_subsequence(alphanumerics("".join(words)), alphanumerics(plain))
    assert mentioned_user_ids(strip_mention(text, BOT)) == list(dict.fromkeys(others))


# Markdown conversion and splitting -----------------------------------------------------------------

MARKDOWN_PIECES = st.sampled_from(
    [
        "word",
        "**bold**",
        "*it*",
        "_it_",
        "~~gone~~",
        "`co*de`",
        "a & b",
        "x < y > z",
        "# Title",
        "- item",
        "> quote",
        "1. first",
        "[label](https://example.com/a_(b)?q=1&r=2)",
        "<https://example.com>",
        "| a | b |",
        "|---|---|",
        "```",
        "~~~",
        " ",
        "\n",
        "\n\n",
        "<@U1>",
        "\\*",
        "émoji 🎉",
        "    indented",
    ]
)


@PROPERTY_SETTINGS
@given(st.text() | st.lists(MARKDOWN_PIECES, max_size=60).map("".join), st.integers(min_value=MIN_LIMIT, max_value=600))
def test_any_markdown_renders_to_valid_messages_without_losing_text(markdown: str, limit: int) -> None:
    chunks = render_reply(markdown, limit=limit)
    assert all(chunk.strip() and len(chunk) <= min(limit, SLACK_TEXT_LIMIT) for chunk in chunks)
    assert not re.search(r"<(?![@#!]|https?:|mailto:)", "".join(chunks))  # every < opens a Slack entity
    assert is_subsequence(readable(markdown), alphanumerics("".join(chunks)))
    assert bool(chunks) == bool(markdown_to_mrkdwn(markdown).strip())


# Odd events from people: what Slack can send on a person's message -------------------------------

# The fields of a message event the bot reads, and of an assistant_thread_started event.
MESSAGE_FIELDS = ["text", "user", "ts", "thread_ts", "channel", "channel_type", "subtype", "files", "team", "blocks"]
THREAD_FIELDS = ["assistant_thread", "event_ts"]
UNKNOWN_SUBTYPES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20)
# Slack delivers up to 40,000 characters of text and more in edge cases; the bot must cope with 100,000.
HUGE_TEXTS = st.tuples(st.text(min_size=1, max_size=3), st.sampled_from([4_001, 40_000, 100_000])).map(
    lambda piece_and_length: (piece_and_length[0] * piece_and_length[1])[: piece_and_length[1]]
)
# Files as Slack lists them, including external, tombstoned and half-described ones.
ODD_FILES = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.none() | st.text(max_size=12),
            "name": st.none() | st.text(max_size=20),
            "title": st.none() | st.text(max_size=20),
            "mimetype": st.none() | st.text(max_size=20),
            "filetype": st.none() | st.text(max_size=8),
            "size": st.none() | st.integers(min_value=0),
            "url_private_download": st.none() | st.text(max_size=30),
            "mode": st.sampled_from(["hosted", "external", "tombstone", "snippet"]),
        },
    ),
    max_size=3,
)


def odd_value(field: str) -> st.SearchStrategy[Any]:
    """A value Slack may send for field: null, empty, huge or unknown (wrong types are the front door's 400)."""
    empty = st.none() | st.just("")
    if field == "text":
        return empty | HUGE_TEXTS | st.text()
    if field == "subtype":
        return empty | NON_USER_SUBTYPES | UNKNOWN_SUBTYPES | st.sampled_from(["file_share", "thread_broadcast"])
    if field == "files":
        return st.none() | ODD_FILES
    if field == "blocks":
        return st.none() | st.lists(st.dictionaries(st.sampled_from(["type", "elements"]), JSON_VALUES), max_size=2)
    if field == "assistant_thread":
        # Bolt's own assistant middleware needs channel_id and thread_ts, which Slack always sends.
        return st.none() | st.fixed_dictionaries(
            {"channel_id": st.just(DM), "thread_ts": st.just("1.2")},
            optional={"user_id": empty, "context": st.none() | st.dictionaries(st.text(max_size=10), JSON_SCALARS)},
        )
    return empty | st.text(max_size=12)


@st.composite
def odd_person_events(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A signed envelope of a person's message or assistant thread with fields null, missing, huge or unknown."""
    envelope = copy.deepcopy(base)
    envelope["event_id"] = "Ev" + draw(st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=8, max_size=12))
    event = envelope["event"]
    fields = THREAD_FIELDS if event.get("type") == "assistant_thread_started" else MESSAGE_FIELDS
    for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(odd_value(field))
    if draw(st.booleans()):
        del envelope[draw(st.sampled_from(["team_id", "event_id"]))]
    return envelope


async def test_every_odd_event_a_person_can_cause_is_answered_2xx_and_the_bot_keeps_working(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    channel_post = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> a question")
    dm_post = slack_double.human_posts(DM, "U0ADA", "hello")
    dm_thread_post = slack_double.human_posts(DM, "U0ADA", "in a thread", thread_ts=dm_post.ts)
    bases = [
        *channel_post.envelopes,
        *dm_post.envelopes,
        *dm_thread_post.envelopes,
        slack_double.assistant_thread_started(DM, "U0ADA"),
    ]
    loop = asyncio.get_running_loop()

    @DELIVERY_SETTINGS
    @given(st.sampled_from(bases).flatmap(odd_person_events))
    def delivered(envelope: dict[str, Any]) -> None:
        response = asyncio.run_coroutine_threadsafe(bot.deliver(envelope), loop).result(timeout=60)
        assert 200 <= response.status_code < 300, (response.status_code, response.text, envelope)

    await asyncio.to_thread(delivered)
    await bot.settle()
    ts = await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> still there?")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Bob: still there?"]
