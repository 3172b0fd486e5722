"""Feedback on answers: the table on each database, the buttons' clicks and the comment modal, the admin's
summary, the per-channel switch and the command line, against the doubles."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from conftest import SIGNING_SECRET
from doubles.slack_events import deliver_form, view_submission_body
from sqlalchemy import delete
from support.commands import last_ephemeral, run_command
from support.feedback import feedback_block, rate
from support.workspace import ADA, BOB, BOT, CHANNEL

from bot.slack.commands import FEEDBACK_ADMINS_ONLY
from bot.slack.feedback import ANSWER_GONE, COMMENT_CALLBACK, COMMENT_SAVED, THANKS
from bot.store.channels import ChannelStore
from bot.store.feedback import FeedbackStore
from bot.store.models import TurnRecord, TurnStatus
from bot.store.repositories import Store, utcnow

TEAM = "T0TEAM"
OTHER_TEAM = "T0OTHER"
_triggers = itertools.count(1)


async def answered_turn(store: Store, *, event_id: str, reply_ts: str, team: str = TEAM, user: str = "U0ADA") -> int:
    """A turn the bot answered with the message at reply_ts."""
    conversation_id, _ = await store.record_arriving_turn(
        team_id=team,
        channel_id=CHANNEL,
        thread_key=f"thread-{event_id}",
        surface="channel",
        event_id=event_id,
        user_id=user,
        message_ts="1.0",
        payload={"text": "hi"},
    )
    turn = await store.get_turn(team_id=team, event_id=event_id)
    assert turn is not None
    await store.update_turns([turn.id], status=TurnStatus.ANSWERED.value, reply_ts=reply_ts)
    return turn.id


# The feedback table, on SQLite and PostgreSQL -------------------------------------------------------


async def test_one_rating_per_person_per_answer_and_a_later_click_replaces_it(store: Store) -> None:
    await answered_turn(store, event_id="Ev1", reply_ts="10.1")
    feedback = FeedbackStore(store)
    assert await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", value="bad")
    assert await feedback.comment(
        team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", comment="It missed the date."
    )
    [channel] = await feedback.summary(team_id=TEAM)
    assert (channel.good, channel.bad) == (0, 1)
    assert [(c.user_id, c.value, c.comment) for c in channel.comments] == [("U0ADA", "bad", "It missed the date.")]
    # The same rating again keeps the comment; a changed rating replaces both.
    assert await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", value="bad")
    [channel] = await feedback.summary(team_id=TEAM)
    assert (channel.bad, len(channel.comments)) == (1, 1)
    assert await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", value="good")
    assert await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0BOB", value="good")
    [channel] = await feedback.summary(team_id=TEAM, channel_id=CHANNEL)
    assert (channel.good, channel.bad, channel.comments) == (2, 0, ())


async def test_a_rating_needs_an_answer_of_that_workspace_and_a_comment_needs_a_rating(store: Store) -> None:
    await answered_turn(store, event_id="Ev1", reply_ts="10.1")
    await answered_turn(store, event_id="Ev1", reply_ts="10.1", team=OTHER_TEAM)
    feedback = FeedbackStore(store)
    assert not await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="99.9", user_id="U0ADA", value="good")
    assert not await feedback.rate(team_id=TEAM, channel_id="C0OTHER", answer_ts="10.1", user_id="U0ADA", value="bad")
    assert not await feedback.comment(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", comment="x")
    assert await feedback.rate(team_id=OTHER_TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", value="bad")
    assert await feedback.summary(team_id=TEAM) == []
    [other] = await feedback.summary(team_id=OTHER_TEAM)
    assert (other.team_id, other.good, other.bad) == (OTHER_TEAM, 0, 1)
    assert [channel.team_id for channel in await feedback.summary()] == [OTHER_TEAM]


async def test_the_summary_counts_only_ratings_since_a_time(store: Store) -> None:
    await answered_turn(store, event_id="Ev1", reply_ts="10.1")
    feedback = FeedbackStore(store)
    await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", value="good")
    assert [c.good for c in await feedback.summary(since=utcnow() - timedelta(days=1))] == [1]
    assert await feedback.summary(since=utcnow() + timedelta(days=1)) == []


# End to end: clicks, the comment modal, the admin's summary, the switch, the command line --------------------


@pytest.fixture
def people_in_the_channel(slack_double: Any) -> None:
    """Ada and Bob are members of the channel, where notes only they see can reach them."""
    slack_double.add_channel(CHANNEL, name="general", members=[BOT, ADA, BOB])


async def answered(bot: Any, slack: Any, text: str) -> dict[str, Any]:
    """Ada asks the bot in the channel; returns the answer's (first) message."""
    thread_ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> {text}")
    [answer] = slack.bot_messages(CHANNEL, thread_ts=thread_ts)
    return answer


async def submit_comment(bot: Any, view: dict[str, Any], *, user: str, comment: str) -> None:
    body = view_submission_body(
        view,
        {"comment": {"value": {"type": "plain_text_input", "value": comment}}},
        team_id=TEAM,
        user_id=user,
        trigger_id=f"trigger-{next(_triggers)}",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    assert response.text == ""  # the modal closes
    await bot.settle()


def notes_to(slack: Any, user: str) -> list[str]:
    return [message["text"] for message in slack.ephemeral(CHANNEL, user)]


@pytest.mark.usefixtures("people_in_the_channel")
async def test_ratings_are_thanked_privately_and_a_thumbs_down_asks_for_a_comment(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=[ADA])
    answer = await answered(bot, slack_double, "when is the launch?")
    assert feedback_block(answer)["block_id"] == f"feedback:{answer['ts']}"

    await rate(bot, slack_double, answer, user=ADA, value="good")
    assert notes_to(slack_double, ADA) == [THANKS["good"]]
    assert slack_double.views() == []  # no modal for a 👍

    await rate(bot, slack_double, answer, user=BOB, value="bad")
    assert notes_to(slack_double, BOB) == [THANKS["bad"]]
    [modal] = slack_double.views()
    assert modal["callback_id"] == COMMENT_CALLBACK
    await submit_comment(bot, modal, user=BOB, comment="It gave <!channel> the wrong date.")
    assert notes_to(slack_double, BOB)[-1] == COMMENT_SAVED

    # A later click replaces the person's earlier one: one rating per person per answer.
    await rate(bot, slack_double, answer, user=ADA, value="bad")
    [channel] = await FeedbackStore(bot.bot.store).summary(team_id=TEAM, channel_id=CHANNEL)
    assert (channel.good, channel.bad) == (0, 2)
    assert [(c.user_id, c.comment) for c in channel.comments] == [(BOB, "It gave <!channel> the wrong date.")]

    # The admin's summary: counts and the latest comments, the comment shown without pinging anyone.
    await run_command(bot, slack_double, "/assistant", "feedback", user=ADA)
    summary = last_ephemeral(slack_double, user=ADA)
    assert "👍 0" in summary and "👎 2" in summary
    assert "It gave &lt;!channel&gt; the wrong date." in summary and "<!channel>" not in summary
    await run_command(bot, slack_double, "/assistant", "feedback", user=BOB)
    assert last_ephemeral(slack_double, user=BOB) == FEEDBACK_ADMINS_ONLY
    # The model never saw any of it.
    assert openai_double.user_texts_seen() == ["Ada: when is the launch?"]


@pytest.mark.usefixtures("people_in_the_channel")
async def test_a_click_on_an_answer_that_is_gone_is_acked_and_explained(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    answer = await answered(bot, slack_double, "hello")
    async with bot.bot.store.transaction() as session:
        await session.execute(delete(TurnRecord))  # e.g. purged by retention
    await rate(bot, slack_double, answer, user=ADA, value="bad")
    assert notes_to(slack_double, ADA) == [ANSWER_GONE]
    assert await FeedbackStore(bot.bot.store).summary() == []


@pytest.mark.usefixtures("people_in_the_channel")
async def test_an_admin_switches_the_buttons_off_and_on_per_channel_and_it_is_audited(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=[ADA])
    await run_command(bot, slack_double, "/assistant", "feedback off", user=BOB)
    assert last_ephemeral(slack_double, user=BOB) == FEEDBACK_ADMINS_ONLY
    assert feedback_block(await answered(bot, slack_double, "first")) is not None

    await run_command(bot, slack_double, "/assistant", "feedback off", user=ADA)
    assert "no longer" in last_ephemeral(slack_double, user=ADA)
    assert feedback_block(await answered(bot, slack_double, "second")) is None
    await run_command(bot, slack_double, "/assistant", "feedback", user=ADA)
    assert "(buttons off)" in last_ephemeral(slack_double, user=ADA)

    await run_command(bot, slack_double, "/assistant", "feedback on", user=ADA)
    assert feedback_block(await answered(bot, slack_double, "third")) is not None
    changes = await ChannelStore(bot.bot.store).setting_changes(team_id=TEAM, channel_id=CHANNEL)
    assert [(c.user_id, c.setting, c.from_value, c.to_value) for c in changes] == [
        (ADA, "feedback", "on", "off"),
        (ADA, "feedback", "off", "on"),
    ]


async def test_the_command_line_prints_each_channels_ratings_and_comments(store: Store, database_url: str) -> None:
    await answered_turn(store, event_id="Ev1", reply_ts="10.1")
    await answered_turn(store, event_id="Ev2", reply_ts="10.2", team=OTHER_TEAM)
    feedback = FeedbackStore(store)
    await feedback.rate(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", value="bad")
    await feedback.comment(team_id=TEAM, channel_id=CHANNEL, answer_ts="10.1", user_id="U0ADA", comment="Too long.")
    await feedback.rate(team_id=OTHER_TEAM, channel_id=CHANNEL, answer_ts="10.2", user_id="U0CAT", value="good")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_"))}
    environment |= {
        "SLACK_BOT_TOKEN": "xoxb-cli-test-token-123",
        "SLACK_SIGNING_SECRET": "cli-signing-secret-456",
        "OPENAI_API_KEY": "sk-cli-test-key-789",
        "DATABASE_URL": database_url,
    }

    def feedback_cli(*arguments: str) -> str:
        shown = subprocess.run(
            [sys.executable, "-m", "bot", "feedback", *arguments],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    ours = feedback_cli("--team", TEAM, "--since", "7").splitlines()
    assert ours[0] == f"{TEAM} {CHANNEL}: 0 good, 1 bad"
    assert ours[1].endswith("U0ADA (bad): Too long.") and len(ours) == 2
    assert f"{OTHER_TEAM} {CHANNEL}: 1 good, 0 bad" in feedback_cli()
    assert feedback_cli("--team", "T0NOBODY").strip() == "no feedback recorded"
