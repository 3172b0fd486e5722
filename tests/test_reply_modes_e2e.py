"""End to end: when the bot speaks in a channel (`/assistant reply mention|thread|all`), on every backend, and
two workspaces' channel settings and feedback never crossing."""

from __future__ import annotations

import itertools
from typing import Any

from conftest import SIGNING_SECRET
from doubles.slack_events import deliver_form, slash_command_body
from support.commands import last_ephemeral, run_command
from support.slack_view import bot_texts
from support.workspace import ADA, BOB, BOT, CHANNEL

from bot.slack.commands import REPLY_ADMINS_ONLY
from bot.store.channels import ChannelStore
from bot.store.feedback import FeedbackStore

TEAM = "T0TEAM"
OTHER_TEAM = "T0OTHER"
OTHER_TOKEN = "xoxb-other-team-token-77c1"
OTHER_BOT = "U0BOT2"
_triggers = itertools.count(1)


async def show_replies(bot: Any, slack: Any) -> str:
    await run_command(bot, slack, "/assistant", "show", user=ADA)
    return next(line for line in last_ephemeral(slack, user=ADA).splitlines() if line.startswith("Replies:"))


async def test_thread_mode_is_the_default_answering_mentions_and_follow_ups(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    assert (await show_replies(bot, slack_double)).startswith("Replies: `thread`")
    thread = await bot.say(CHANNEL, ADA, f"<@{BOT}> what is our launch date?")
    await bot.say(CHANNEL, BOB, "and the time?", thread_ts=thread)
    assert bot_texts(slack_double, CHANNEL, thread) == [
        "Echo: Ada: what is our launch date?",
        "Echo: Bob: and the time?",
    ]
    unaddressed = await bot.say(CHANNEL, ADA, "lunch anyone?")
    assert bot_texts(slack_double, CHANNEL, unaddressed) == []
    assert openai_double.model_calls == 2


async def test_without_reply_without_mention_the_default_is_mention_mode(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(reply_without_mention=False)
    assert (await show_replies(bot, slack_double)).startswith("Replies: `mention`")
    thread = await bot.say(CHANNEL, ADA, f"<@{BOT}> what is our launch date?")
    await bot.say(CHANNEL, BOB, "and the time?", thread_ts=thread)
    assert bot_texts(slack_double, CHANNEL, thread) == ["Echo: Ada: what is our launch date?"]


async def test_mention_mode_answers_only_mentions_and_each_once(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=[ADA])
    thread = await bot.say(CHANNEL, ADA, f"<@{BOT}> what is our launch date?")
    await run_command(bot, slack_double, "/assistant", "reply mention", user=ADA)
    assert last_ephemeral(slack_double, user=ADA) == "Done: in this channel I answer only when mentioned."
    await bot.say(CHANNEL, BOB, "and the time?", thread_ts=thread)
    await bot.say(CHANNEL, BOB, f"<@{BOT}> and the place?", thread_ts=thread)
    assert bot_texts(slack_double, CHANNEL, thread) == [
        "Echo: Ada: what is our launch date?",
        "Echo: Bob: and the place?",
    ]
    assert (await show_replies(bot, slack_double)).startswith("Replies: `mention`")


async def test_all_mode_answers_every_new_message_in_its_thread_and_only_admins_choose_it(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=[ADA])
    await run_command(bot, slack_double, "/assistant", "reply all", user=BOB)
    assert last_ephemeral(slack_double, user=BOB) == REPLY_ADMINS_ONLY
    question = await bot.say(CHANNEL, BOB, "my laptop will not start")
    assert bot_texts(slack_double, CHANNEL, question) == []

    await run_command(bot, slack_double, "/assistant", "reply all", user=ADA)
    question = await bot.say(CHANNEL, BOB, "my laptop will not start")
    await bot.say(CHANNEL, BOB, "it beeps twice", thread_ts=question)
    assert bot_texts(slack_double, CHANNEL, question) == [
        "Echo: Bob: my laptop will not start",
        "Echo: Bob: it beeps twice",
    ]
    # A message that mentions the bot as well is answered once, not by both of its events.
    mentioned = await bot.say(CHANNEL, ADA, f"<@{BOT}> the printer is out of paper")
    assert bot_texts(slack_double, CHANNEL, mentioned) == ["Echo: Ada: the printer is out of paper"]
    assert (await show_replies(bot, slack_double)).startswith("Replies: `all`")

    await run_command(bot, slack_double, "/assistant", "reply thread", user=ADA)
    later = await bot.say(CHANNEL, BOB, "never mind")
    assert bot_texts(slack_double, CHANNEL, later) == []
    changes = await ChannelStore(bot.bot.store).setting_changes(team_id=TEAM, channel_id=CHANNEL)
    assert [(c.user_id, c.setting, c.from_value, c.to_value) for c in changes] == [
        (ADA, "reply_mode", "thread", "all"),
        (ADA, "reply_mode", "all", "thread"),
    ]


async def test_an_unknown_mode_is_explained(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=[ADA])
    await run_command(bot, slack_double, "/assistant", "reply sometimes", user=ADA)
    assert last_ephemeral(slack_double, user=ADA) == "Usage: `/assistant reply mention|thread|all`."
    assert await ChannelStore(bot.bot.store).setting_changes(team_id=TEAM, channel_id=CHANNEL) == []


async def test_two_workspaces_settings_and_feedback_never_cross(
    start_bot, slack_double, openai_double, backend, database_url, secret_audit
) -> None:
    secret_audit.secrets["the second team's bot token"] = OTHER_TOKEN
    slack_double.add_workspace(OTHER_TEAM, OTHER_TOKEN, OTHER_BOT, "B0BOT2")
    slack_double.add_user("U0CAT", name="cat", display_name="Cat", tz="Asia/Tokyo", team_id=OTHER_TEAM)
    slack_double.add_channel(CHANNEL, name="general", team_id=OTHER_TEAM, members=[OTHER_BOT, "U0CAT"])
    ours = await start_bot(database_url=database_url, admin_user_ids=[ADA, "U0CAT"])
    theirs = await start_bot(database_url=database_url, slack_bot_token=OTHER_TOKEN, admin_user_ids=[ADA, "U0CAT"])

    await run_command(ours, slack_double, "/assistant", "reply all", user=ADA)
    await run_command(ours, slack_double, "/assistant", "feedback off", user=ADA)
    asked = await ours.say(CHANNEL, ADA, "where is the wiki?")
    assert bot_texts(slack_double, CHANNEL, asked, team_id=TEAM) == ["Echo: Ada: where is the wiki?"]

    # The same channel id in the other workspace keeps the defaults: no answer without a mention, buttons on.
    post = slack_double.human_posts(CHANNEL, "U0CAT", "where is the wiki?", team_id=OTHER_TEAM)
    for envelope in post.envelopes:
        assert (await theirs.deliver(envelope)).status_code == 200
    await theirs.settle()
    assert bot_texts(slack_double, CHANNEL, post.ts, team_id=OTHER_TEAM) == []
    mention = slack_double.human_posts(CHANNEL, "U0CAT", f"<@{OTHER_BOT}> where is the wiki?", team_id=OTHER_TEAM)
    for envelope in mention.envelopes:
        assert (await theirs.deliver(envelope)).status_code == 200
    await theirs.settle()
    [answer] = slack_double.bot_messages(CHANNEL, thread_ts=mention.ts, team_id=OTHER_TEAM)
    assert any(block["type"] == "context_actions" for block in answer.get("blocks") or [])
    [ours_answer] = slack_double.bot_messages(CHANNEL, thread_ts=asked, team_id=TEAM)
    assert not any(block["type"] == "context_actions" for block in ours_answer.get("blocks") or [])

    # A rating in their workspace is theirs alone.
    feedback = FeedbackStore(theirs.bot.store)
    assert await feedback.rate(
        team_id=OTHER_TEAM, channel_id=CHANNEL, answer_ts=answer["ts"], user_id="U0CAT", value="good"
    )
    assert not await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts=answer["ts"], user_id=ADA, value="bad")
    await run_command(ours, slack_double, "/assistant", "feedback", user=ADA)
    assert "No ratings yet." in last_ephemeral(slack_double, user=ADA)
    body = slash_command_body(
        "/assistant",
        "feedback",
        team_id=OTHER_TEAM,
        channel_id=CHANNEL,
        user_id="U0CAT",
        response_url=slack_double.new_response_url(channel=CHANNEL, user="U0CAT", team_id=OTHER_TEAM),
        trigger_id=f"trigger-{next(_triggers)}",
    )
    assert (await deliver_form(theirs.url, body, SIGNING_SECRET)).status_code == 200
    await theirs.settle()
    [their_summary] = [m["text"] for m in slack_double.ephemeral(CHANNEL, "U0CAT", team_id=OTHER_TEAM)]
    assert "👍 1" in their_summary and "buttons on" in their_summary
