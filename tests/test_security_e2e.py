"""Security end to end: signed requests only, no secret shown anywhere, no data crossing teams or channels."""

from __future__ import annotations

import json
import logging
import sys
import time

from conftest import OPENAI_KEY, SIGNING_SECRET
from doubles.slack_events import block_action_body, deliver_form, slash_command_body
from secret_audit import find_leaks, record_text
from sqlalchemy import select
from support.file_view import KEEPS_FILES_ON_SERVER, documents_seen
from support.model_view import ANSWER_REQUESTS, conversations_seen
from support.samples import pdf_with_text
from support.slack_view import bot_texts
from support.workspace import BOT, CHANNEL, DM

from bot.conversations.profiles import ProfileOrigin, ProfileSpec
from bot.store.models import ApiFile, Conversation, TurnRecord

TEAM = "T0TEAM"
OTHER_TEAM = "T0OTHER"
OTHER_TOKEN = "xoxb-other-team-token-93b1"
OTHER_BOT = "U0BOT2"
OUR_PLAN = pdf_with_text("Team one ships on Monday.")
THEIR_PLAN = pdf_with_text("Team two ships on Friday.")


# Signatures -------------------------------------------------------------------------------------


async def test_forged_or_stale_slash_commands_and_clicks_are_refused(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    response_url = slack_double.new_response_url(channel=CHANNEL, user="U0ADA")
    command = slash_command_body(
        "/ask",
        "what is our secret?",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id="U0ADA",
        response_url=response_url,
        trigger_id="1.2.3",
    )
    click = block_action_body(
        action_id="forget_confirm",
        value="C0GENERAL",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id="U0ADA",
        message={"ts": "1700000000.000100", "text": "Forget?"},
        response_url=response_url,
        trigger_id="1.2.4",
    )
    stale = int(time.time()) - 6 * 60  # Bolt accepts five minutes of clock skew, no more
    refused = [
        await deliver_form(bot.url, body, SIGNING_SECRET, **forgery)
        for body in (command, click)
        for forgery in ({"bad_signature": True}, {"timestamp": stale})
    ]
    await bot.settle()
    assert [response.status_code for response in refused] == [401, 401, 401, 401]
    assert slack_double.response_url_posts == []
    assert [call.method for call in slack_double.calls if call.method != "auth.test"] == []
    assert openai_double.requests == []
    accepted = await deliver_form(bot.url, command, SIGNING_SECRET)
    await bot.settle()
    assert accepted.status_code == 200
    # The same body, properly signed and fresh, is answered.
    assert openai_double.model_calls == 1 and "what is our secret?" in openai_double.user_texts_seen()[-1]


# Secrets ----------------------------------------------------------------------------------------


async def test_an_api_error_echoing_the_key_is_explained_without_it(
    start_bot, slack_double, openai_double, backend, caplog
) -> None:
    openai_double.fail_next(
        "POST",
        ANSWER_REQUESTS[backend],
        status=401,
        code="invalid_api_key",
        message=f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key at platform.openai.com.",
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    assert bot_texts(slack_double, CHANNEL, ts) == [
        ":warning: The bot's API credentials were refused. Please tell whoever runs this bot."
    ]
    async with bot.bot.store.transaction() as session:
        errors = list(await session.scalars(select(TurnRecord.error)))
    assert errors and all(error and OPENAI_KEY not in error for error in errors)
    assert any("401" in record.getMessage() for record in caplog.records)  # the operator still sees what happened


async def test_assistant_show_and_a_gateway_token_never_reveal_secrets(
    start_bot, slack_double, openai_double, secret_audit
) -> None:
    secret_audit.secrets["an extra header's key"] = "hdr-key-51"
    openai_double.require_query_token = ("api_token", "gw-token-77")
    bot = await start_bot(
        openai_extra_query={"api_token": "gw-token-77"}, openai_extra_headers={"X-Api-Key": "hdr-key-51"}
    )
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    response_url = slack_double.new_response_url(channel=CHANNEL, user="U0ADA")
    body = slash_command_body(
        "/assistant",
        "show",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id="U0ADA",
        response_url=response_url,
        trigger_id="1.2.5",
    )
    assert (await deliver_form(bot.url, body, SIGNING_SECRET)).status_code == 200
    await bot.settle()
    [shown] = [post.body["text"] for post in slack_double.response_url_posts]
    assert "This channel uses" in shown
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello"]
    # The audit fixture then searches every log line, Slack message and this answer for the secrets.


def test_the_audit_finds_a_secret_in_a_chained_traceback() -> None:
    try:
        try:
            raise ValueError(f"token {OPENAI_KEY}")
        except ValueError as inner:
            raise RuntimeError("request failed") from inner
    except RuntimeError:
        record = logging.LogRecord("bot", logging.ERROR, __file__, 1, "failed", None, exc_info=sys.exc_info())
    leaks = find_leaks(
        {"OPENAI_API_KEY": OPENAI_KEY}, [("log bot", record_text(record)), ("Slack chat.postMessage", "fine")]
    )
    assert len(leaks) == 1 and leaks[0].startswith("log bot: OPENAI_API_KEY in ")


# Isolation --------------------------------------------------------------------------------------


def _second_workspace(slack_double) -> None:
    """A second team whose channel and DM ids collide with the first's, so only the team tells them apart."""
    slack_double.add_workspace(OTHER_TEAM, OTHER_TOKEN, OTHER_BOT, "B0BOT2")
    slack_double.add_user("U0CAT", name="cat", display_name="Cat", tz="Asia/Tokyo", team_id=OTHER_TEAM)
    slack_double.add_channel(CHANNEL, name="general", team_id=OTHER_TEAM)
    slack_double.add_channel(DM, name="cat-dm", is_im=True, user="U0CAT", team_id=OTHER_TEAM)


async def test_two_workspaces_sharing_one_database_never_cross(
    start_bot, slack_double, openai_double, backend, database_url, secret_audit
) -> None:
    secret_audit.secrets["the second team's bot token"] = OTHER_TOKEN
    _second_workspace(slack_double)
    ours = await start_bot(database_url=database_url)
    theirs = await start_bot(database_url=database_url, slack_bot_token=OTHER_TOKEN)
    spec = ProfileSpec(name="Team one's helper", model="gpt-4o-mini", instructions="Help team one.", tools=())
    origin = ProfileOrigin(team_id=TEAM, channel_id=CHANNEL, user_id="U0ADA")
    chosen = await ours.bot.backend.profiles.create(spec, origin=origin)
    await ours.bot.store.set_channel_profile(team_id=TEAM, channel_id=CHANNEL, profile_id=chosen.id, updated_by="U0ADA")

    # Each conversation's model sees only that conversation's documents, whatever the team shares elsewhere.
    our_report = slack_double.add_file("our-plan.pdf", OUR_PLAN, user="U0ADA")
    their_report = slack_double.add_file("their-plan.pdf", THEIR_PLAN, user="U0CAT", team_id=OTHER_TEAM)
    our_ts = await ours.say(CHANNEL, "U0ADA", f"<@{BOT}> our plan", files=[our_report])
    assert documents_seen(openai_double, backend) == {"our-plan.pdf"}
    await ours.say(DM, "U0ADA", "our private note")
    assert documents_seen(openai_double, backend) == set()
    post = slack_double.human_posts(
        CHANNEL, "U0CAT", f"<@{OTHER_BOT}> their plan", files=[their_report], team_id=OTHER_TEAM
    )
    for envelope in post.envelopes:
        assert (await theirs.deliver(envelope)).status_code == 200
    await theirs.settle()
    assert documents_seen(openai_double, backend) == {"their-plan.pdf"}
    for envelope in slack_double.human_posts(DM, "U0CAT", "their private note", team_id=OTHER_TEAM).envelopes:
        assert (await theirs.deliver(envelope)).status_code == 200
    await theirs.settle()
    assert documents_seen(openai_double, backend) == set()
    their_ts = post.ts

    # What people see: each team's channel and DM show only that team's answers.
    assert bot_texts(slack_double, CHANNEL, our_ts, team_id=TEAM)[-1].startswith("Echo: Ada: our plan")
    assert bot_texts(slack_double, CHANNEL, their_ts, team_id=OTHER_TEAM)[-1].startswith("Echo: Cat: their plan")
    assert bot_texts(slack_double, DM, team_id=TEAM) == ["Echo: our private note"]
    assert bot_texts(slack_double, DM, team_id=OTHER_TEAM) == ["Echo: their private note"]

    # The shared database: four conversations, each with its own memory on the backend.
    async with ours.bot.store.transaction() as session:
        conversations = {
            (c.team_id, c.channel_id, c.thread_key): c for c in await session.scalars(select(Conversation))
        }
        files = list(await session.scalars(select(ApiFile)))
    assert set(conversations) == {
        (TEAM, CHANNEL, our_ts),
        (TEAM, DM, "dm"),
        (OTHER_TEAM, CHANNEL, their_ts),
        (OTHER_TEAM, DM, "dm"),
    }
    states = [conversation.backend_state for conversation in conversations.values()]
    assert all(states) and len({json.dumps(state, sort_keys=True) for state in states}) == 4
    # What the model saw, one answer per conversation in the order they were asked: only that conversation.
    our_channel, our_dm, their_channel, their_dm = conversations_seen(openai_double)
    assert our_dm == [("user", "our private note")]
    assert their_dm == [("user", "their private note")]
    assert [(role, text.splitlines()[0]) for role, text in our_channel] == [("user", "Ada: our plan")]
    assert [(role, text.splitlines()[0]) for role, text in their_channel] == [("user", "Cat: their plan")]

    # Files: where they live on the server, each team's upload is its own (and reached only its own conversation).
    uploaded = [(OTHER_TEAM, CHANNEL), (TEAM, CHANNEL)] if KEEPS_FILES_ON_SERVER[backend] else []
    assert sorted((f.team_id, f.channel_id) for f in files) == uploaded
    assert len({f.api_file_id for f in files}) == len(uploaded)

    # Settings: the assistant one team chose for its #general is not the other team's.
    instructions = [call[0] for call in openai_double.model_inputs()]
    assert instructions[0] == ("system", "Help team one.")
    assert instructions[2][0] == "system" and instructions[2] != ("system", "Help team one.")
    assert await theirs.bot.store.channel_profile(team_id=OTHER_TEAM, channel_id=CHANNEL) is None
