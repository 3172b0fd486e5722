"""End to end: `/assistant forget` while a message is still being answered is refused, deletes nothing,
and the message still gets its answer (issue 10, item 5)."""

from __future__ import annotations

from conftest import SIGNING_SECRET
from doubles.openai import ScriptedAnswer
from doubles.slack_events import block_action_body, deliver_form, slash_command_body
from sqlalchemy import func, select
from support.commands import TEAM, last_ephemeral
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import ADA, BOT, CHANNEL

from bot.slack.commands import BUSY
from bot.store.channels import ChannelStore
from bot.store.models import Conversation, TurnRecord


async def test_forget_while_a_message_is_being_answered_is_refused_and_the_answer_still_comes(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    root = await bot.say(CHANNEL, ADA, f"<@{BOT}> remember the number 7")
    conversation = await bot.bot.store.find_conversation(team_id=TEAM, channel_id=CHANNEL, thread_key=root)
    memories = await ChannelStore(bot.bot.store).backend_states(conversation.id)
    assert memories

    # A slow answer is in progress when the forget is confirmed.
    openai_double.script(ScriptedAnswer(text="Still thinking about seven", chunks=20, chunk_delay=0.2))
    post = slack_double.human_posts(CHANNEL, ADA, "what was the number?", thread_ts=root)
    for envelope in post.envelopes:
        assert (await bot.deliver(envelope)).status_code == 200
    await eventually(lambda: openai_double.user_texts_seen()[-1:] == ["Ada: what was the number?"], what="answering")

    command = slash_command_body(
        "/assistant",
        "forget",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=ADA,
        response_url=slack_double.new_response_url(channel=CHANNEL, user=ADA),
        trigger_id="trigger-forget",
    )
    assert (await deliver_form(bot.url, command, SIGNING_SECRET)).status_code == 200
    await bot.bot.background.idle()  # not the answer: it is still streaming
    question = slack_double.ephemeral(CHANNEL, ADA)[-1]
    assert question["text"].startswith("Forget this conversation?")
    confirm = next(e for e in question["blocks"][1]["elements"] if e["action_id"] == "forget_confirm")
    click = block_action_body(
        action_id="forget_confirm",
        value=confirm["value"],
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=ADA,
        message=question,
        response_url=slack_double.new_response_url(channel=CHANNEL, user=ADA),
        trigger_id="trigger-confirm",
    )
    assert (await deliver_form(bot.url, click, SIGNING_SECRET)).status_code == 200
    await bot.bot.background.idle()
    assert last_ephemeral(slack_double, user=ADA) == BUSY

    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, root)[-1] == "Still thinking about seven"
    # Nothing was deleted: the conversation, both turns and its memory remain.
    assert await bot.bot.store.find_conversation(team_id=TEAM, channel_id=CHANNEL, thread_key=root) is not None
    async with bot.bot.store.transaction() as session:
        turns = await session.scalar(
            select(func.count()).select_from(TurnRecord).where(TurnRecord.conversation_id == conversation.id)
        )
        conversations = await session.scalar(select(func.count()).select_from(Conversation))
    assert turns == 2 and conversations == 1
    kept = await ChannelStore(bot.bot.store).backend_states(conversation.id)  # updated by the answer, not deleted
    assert [memory.backend for memory in kept] == [memory.backend for memory in memories]
    assert openai_double.requests_to("DELETE", r".") == []
