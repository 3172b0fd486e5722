"""End to end: the model reads Slack with read_thread and read_channel, only where the asker may read, on every backend."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from doubles.openai import ScriptedAnswer
from doubles.slack.past import backdate
from support.slack_view import bot_texts
from support.workspace import ADA, BOB, BOT, CHANNEL, DM

from bot.conversations.reading import SLACK_UNAVAILABLE
from bot.store.moderation_log import ModerationLog

LAUNCH = "C0LAUNCH"
SECRET = "C0SECRET"
BOBS_DM = "D0BOB"
OTHER_TEAM = "T0OTHER"
CARL = "U0CARL"


def tool_outputs(openai_double: Any) -> list[dict[str, Any]]:
    """The tool outputs the newest model call received, in call order."""
    return [json.loads(text) for role, text in openai_double.model_inputs()[-1] if role == "tool"]


def said(output: dict[str, Any]) -> list[tuple[str, str]]:
    return [(message["author"], message["text"]) for message in output["messages"]]


def reads_of(slack_double: Any, method: str, channel: str) -> list[Any]:
    return [call for call in slack_double.calls_to(method) if call.params.get("channel") == channel]


async def test_read_thread_gives_the_model_the_current_thread_with_names(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.script(ScriptedAnswer(tool_calls=[("read_thread", {})], text_after_tools="Monday it is."))
    bot = await start_bot()
    root = slack_double.human_posts(CHANNEL, ADA, "Should we ship on Friday?").ts
    slack_double.human_posts(CHANNEL, BOB, "Monday is safer, right <@U0ADA>?", thread_ts=root)
    await bot.say(CHANNEL, ADA, f"<@{BOT}> summarise this thread", thread_ts=root)

    [output] = tool_outputs(openai_double)
    assert output["channel"] == "#general"
    assert said(output) == [
        ("Ada", "Should we ship on Friday?"),
        ("Bob", "Monday is safer, right @Ada?"),
        ("Ada", "@Assistant summarise this thread"),
    ]  # up to the question: not the answer being written
    assert bot_texts(slack_double, CHANNEL, root) == ["Monday it is."]


async def test_read_channel_reads_a_window_with_a_cap_and_a_listed_thread_by_its_link(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_channel(LAUNCH, name="launch")
    old = slack_double.human_posts(LAUNCH, BOB, "the old plan: ship in spring").ts
    backdate(slack_double, LAUNCH, old, hours=48)
    slack_double.human_posts(LAUNCH, BOB, "we pick Tuesday")
    decided = slack_double.human_posts(LAUNCH, ADA, "decided: launch at 10:00, <@U0BOB> leads").ts
    agreed = slack_double.human_posts(LAUNCH, BOB, "agreed", thread_ts=decided).ts
    slack_double.human_posts(LAUNCH, ADA, "budget approved")
    # A reply's link, as Slack's "Copy link" gives it: the thread is named in the query.
    link = f"https://t0team.slack.com/archives/{LAUNCH}/p{agreed.replace('.', '')}?thread_ts={decided}&cid={LAUNCH}"
    openai_double.script(
        ScriptedAnswer(
            tool_calls=[
                ("read_channel", {"channel": "#launch", "since_hours": 24}),
                ("read_channel", {"channel": LAUNCH, "since_hours": 72, "limit": 2}),
                ("read_thread", {"permalink": link}),
            ]
        )
    )
    bot = await start_bot()
    await bot.say(CHANNEL, ADA, f"<@{BOT}> what did we decide in #launch this week?")

    day, capped, thread = tool_outputs(openai_double)
    assert said(day) == [
        ("Bob", "we pick Tuesday"),
        ("Ada", "decided: launch at 10:00, @Bob leads"),
        ("Ada", "budget approved"),
    ]  # not the message of two days ago, nor the reply in a thread
    assert day["since_hours"] == 24
    assert day["messages"][1]["reply_count"] == 1 and day["messages"][1]["thread_ts"] == decided
    assert said(capped) == [("Ada", "decided: launch at 10:00, @Bob leads"), ("Ada", "budget approved")]
    assert said(thread) == [("Ada", "decided: launch at 10:00, @Bob leads"), ("Bob", "agreed")]
    # The calls may run at once, so in any order; the cap is Slack's page size, not a read of everything.
    limits = sorted(call.params.get("limit") for call in reads_of(slack_double, "conversations.history", LAUNCH))
    assert limits == ["2", "50"]


async def test_reads_outside_the_askers_rights_are_refused_and_nothing_is_read(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_channel(SECRET, name="secret", members=[BOT, BOB])
    slack_double.human_posts(SECRET, BOB, "secret plans")
    slack_double.add_channel(BOBS_DM, is_im=True, user=BOB)
    slack_double.human_posts(BOBS_DM, BOB, "my private note to the bot")
    # Another workspace with the app, whose channel has the same id as ours: only the link's workspace differs.
    slack_double.add_workspace(OTHER_TEAM, "xoxb-other-team-token", "U0OTHERBOT", "B0OTHERBOT")
    slack_double.add_user(CARL, name="carl", display_name="Carl", team_id=OTHER_TEAM)
    slack_double.add_channel(CHANNEL, name="general", team_id=OTHER_TEAM)
    theirs = slack_double.human_posts(CHANNEL, CARL, "the other team's roadmap", team_id=OTHER_TEAM).ts
    link = f"https://t0other.slack.com/archives/{CHANNEL}/p{theirs.replace('.', '')}"
    openai_double.script(
        ScriptedAnswer(
            tool_calls=[
                ("read_channel", {"channel": "#secret"}),
                ("read_channel", {"channel": BOBS_DM}),
                ("read_thread", {"permalink": link}),
                ("read_channel", {"channel": DM}),  # Ada's own DM with the bot, but not the conversation asked from
            ]
        )
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> what is going on elsewhere?")

    secret, bobs_dm, other_team, own_dm = tool_outputs(openai_double)
    assert secret == {"refused": "you are not a member of #secret, so I won't read it for you"}
    assert "only read the direct messages of the conversation we are in" in bobs_dm["refused"]
    assert other_team == {"refused": "that link is to another Slack workspace; I only read the workspace we are in"}
    assert "only read the direct messages of the conversation we are in" in own_dm["refused"]
    for channel in (SECRET, BOBS_DM, DM):
        assert reads_of(slack_double, "conversations.history", channel) == []
    assert reads_of(slack_double, "conversations.replies", CHANNEL) == []  # the other workspace's link, unread
    seen = json.dumps(openai_double.model_inputs())
    for text in ("secret plans", "private note", "roadmap"):
        assert text not in seen
    assert "not a member of #secret" in bot_texts(slack_double, CHANNEL, ts)[0]  # relayed to the person


async def test_read_channel_in_a_dm_reads_that_dm_only(start_bot, slack_double, openai_double) -> None:
    slack_double.add_channel(BOBS_DM, is_im=True, user=BOB)
    slack_double.human_posts(BOBS_DM, BOB, "my private note to the bot")
    openai_double.script(
        ScriptedAnswer(text="Noted."),
        ScriptedAnswer(tool_calls=[("read_channel", {}), ("read_channel", {"channel": BOBS_DM})]),
    )
    bot = await start_bot()
    await bot.say(DM, ADA, "remember: the launch is on Tuesday")
    await bot.say(DM, ADA, "what did I tell you?")

    own, bobs = tool_outputs(openai_double)
    assert own["channel"] == "direct messages"
    assert said(own) == [
        ("Ada", "remember: the launch is on Tuesday"),
        ("Assistant", "Noted."),
        ("Ada", "what did I tell you?"),
    ]
    assert "only read the direct messages of the conversation we are in" in bobs["refused"]
    assert reads_of(slack_double, "conversations.history", BOBS_DM) == []


async def test_flagged_messages_read_are_left_out_and_logged_like_input(start_bot, slack_double, openai_double) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    slack_double.add_channel(LAUNCH, name="launch")
    slack_double.human_posts(LAUNCH, BOB, "if we slip again I will hurt someone")
    slack_double.human_posts(LAUNCH, ADA, "ship Tuesday")
    openai_double.script(ScriptedAnswer(tool_calls=[("read_channel", {"channel": "#launch"})]))
    bot = await start_bot()
    await bot.say(CHANNEL, ADA, f"<@{BOT}> catch me up on #launch")

    [output] = tool_outputs(openai_double)
    assert said(output) == [("Ada", "ship Tuesday")]
    assert output["left_out_by_moderation"] == 1
    assert "hurt someone" not in json.dumps(openai_double.model_inputs())
    checked = [request.body["input"] for request in openai_double.requests_to("POST", r"^/v1/moderations$")]
    assert ["if we slip again I will hurt someone", "ship Tuesday"] in checked
    [flag] = await ModerationLog(bot.bot.store).recent(limit=5)
    assert (flag.team_id, flag.channel_id, flag.user_id, flag.direction, flag.source) == (
        "T0TEAM",
        CHANNEL,
        ADA,
        "input",
        "read_channel",
    )
    assert flag.categories == ["violence"]


async def test_membership_is_found_past_the_first_page_of_a_big_channel(start_bot, slack_double, openai_double) -> None:
    crowd = [f"U0A{number:04d}" for number in range(1000)]  # listed before Ada: she is on the second page
    slack_double.add_channel(LAUNCH, name="launch", members=[BOT, *crowd])
    slack_double.human_posts(LAUNCH, ADA, "ship Tuesday")
    openai_double.script(ScriptedAnswer(tool_calls=[("read_channel", {"channel": "#launch"})]))
    bot = await start_bot()
    await bot.say(CHANNEL, ADA, f"<@{BOT}> catch me up on #launch")

    [output] = tool_outputs(openai_double)
    assert said(output) == [("Ada", "ship Tuesday")]
    assert len(reads_of(slack_double, "conversations.members", LAUNCH)) == 2


async def test_in_the_assistant_pane_read_channel_reads_the_channel_the_person_is_viewing(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_channel(LAUNCH, name="launch")
    slack_double.human_posts(LAUNCH, ADA, "ship Tuesday")
    slack_double.add_channel(SECRET, name="secret", members=[BOT, BOB])
    openai_double.script(
        ScriptedAnswer(tool_calls=[("read_channel", {})]), ScriptedAnswer(tool_calls=[("read_channel", {})])
    )
    bot = await start_bot()
    started = slack_double.assistant_thread_started(DM, ADA, context_channel_id=LAUNCH)
    assert (await bot.deliver(started)).status_code == 200
    thread_ts = started["event"]["assistant_thread"]["thread_ts"]
    await bot.say(DM, ADA, "what's new here?", thread_ts=thread_ts)
    [launch] = tool_outputs(openai_double)
    assert launch["channel"] == "#launch" and said(launch) == [("Ada", "ship Tuesday")]

    changed = slack_double.assistant_thread_context_changed(DM, ADA, thread_ts, SECRET)
    assert (await bot.deliver(changed)).status_code == 200
    await bot.say(DM, ADA, "and here?", thread_ts=thread_ts)
    assert tool_outputs(openai_double)[-1] == {"refused": "you are not a member of #secret, so I won't read it for you"}


async def test_a_public_channel_the_bot_is_not_in_is_refused_though_the_asker_is_in_it(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_channel(LAUNCH, name="launch", members=[ADA, BOB])  # public, and Ada is in it; the bot is not
    slack_double.human_posts(LAUNCH, BOB, "launch moved to Thursday")
    openai_double.script(
        ScriptedAnswer(
            tool_calls=[("read_channel", {"channel": "#launch"})],
            text_after_tools="I'm not a member of #launch; someone in it can add me.",
        )
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> catch me up on #launch")

    [output] = tool_outputs(openai_double)
    assert output == {"refused": "I'm not a member of #launch; someone in it can add me"}
    assert reads_of(slack_double, "conversations.history", LAUNCH) == []
    assert "Thursday" not in json.dumps(openai_double.model_inputs())
    assert bot_texts(slack_double, CHANNEL, ts) == ["I'm not a member of #launch; someone in it can add me."]


@pytest.mark.parametrize(
    "outage",
    [
        {"status": 500},
        # Rate limited past the client's own retries (three, each after Retry-After).
        {"status": 429, "headers": {"Retry-After": "0"}, "times": 4},
    ],
    ids=["server-error", "rate-limited"],
)
async def test_a_slack_outage_during_a_read_is_an_error_for_the_model_and_the_answer_still_comes_once(
    start_bot, slack_double, openai_double, caplog, outage
) -> None:
    slack_double.add_channel(LAUNCH, name="launch", members=[BOT, ADA])
    slack_double.human_posts(LAUNCH, ADA, "ship Tuesday")
    openai_double.script(
        ScriptedAnswer(
            tool_calls=[("read_channel", {"channel": "#launch"})],
            text_after_tools="Slack isn't answering right now; try again in a moment.",
        )
    )
    slack_double.fail_next("conversations.history", **outage)
    bot = await start_bot()
    with caplog.at_level(logging.WARNING, logger="bot.conversations.reading"):
        ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> catch me up on #launch")

    [output] = tool_outputs(openai_double)
    assert output == {"error": SLACK_UNAVAILABLE}
    assert "ship Tuesday" not in json.dumps(openai_double.model_inputs())
    assert len(reads_of(slack_double, "conversations.history", LAUNCH)) == outage.get("times", 1)
    # The answer, once: one message in the thread, one model call after the tool's output.
    assert bot_texts(slack_double, CHANNEL, ts) == ["Slack isn't answering right now; try again in a moment."]
    assert [text for role, text in openai_double.model_inputs()[-1] if role == "tool"] == [json.dumps(output)]
    [warning] = [record for record in caplog.records if record.name == "bot.conversations.reading"]
    assert "read_channel" in warning.getMessage() and "conversations.history" in warning.getMessage()
