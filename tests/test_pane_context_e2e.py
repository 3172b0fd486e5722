"""End to end: the channel a person views beside the assistant pane reaches the model with their next
message (its name and topic), on every backend, and follows them as they move."""

from __future__ import annotations

from support.slack_view import bot_texts
from support.workspace import ADA, BOB, BOT, DM

LAUNCH = "C0LAUNCH"
RANDOM = "C0RANDOM"
SECRET = "C0SECRET"


async def test_the_viewed_channel_and_its_topic_reach_the_model_with_the_next_message(
    start_bot, slack_double, openai_double, backend
) -> None:
    slack_double.add_channel(LAUNCH, name="launch", topic="Ship on Friday")
    slack_double.add_channel(RANDOM, name="random")
    slack_double.add_channel(SECRET, name="secret", is_private=True, members=[BOB])  # the bot is not in it
    bot = await start_bot()
    started = slack_double.assistant_thread_started(DM, ADA, context_channel_id=LAUNCH)
    assert (await bot.deliver(started)).status_code == 200
    thread_ts = started["event"]["assistant_thread"]["thread_ts"]

    await bot.say(DM, ADA, "what should I do next?", thread_ts=thread_ts)
    assert openai_double.user_texts_seen()[-1] == (
        "(The person is viewing #launch — topic: Ship on Friday)\n\nwhat should I do next?"
    )
    assert bot_texts(slack_double, DM, thread_ts)[-1].endswith("what should I do next?")

    # They move to another channel: the next message says so, without a topic the channel has not got.
    changed = slack_double.assistant_thread_context_changed(DM, ADA, thread_ts, RANDOM)
    assert (await bot.deliver(changed)).status_code == 200
    await bot.say(DM, ADA, "and here?", thread_ts=thread_ts)
    assert openai_double.user_texts_seen()[-1] == "(The person is viewing #random)\n\nand here?"

    # A channel Slack will not describe to the bot is not named at all (nor the answer held up).
    hidden = slack_double.assistant_thread_context_changed(DM, ADA, thread_ts, SECRET)
    assert (await bot.deliver(hidden)).status_code == 200
    await bot.say(DM, ADA, "and now?", thread_ts=thread_ts)
    assert openai_double.user_texts_seen()[-1] == "and now?"
    assert "secret" not in " ".join(text for inputs in openai_double.model_inputs() for _, text in inputs)


async def test_a_pane_thread_without_a_viewed_channel_and_channel_threads_get_no_context_line(
    start_bot, slack_double, openai_double, backend
) -> None:
    slack_double.add_channel(LAUNCH, name="launch", topic="Ship on Friday")
    bot = await start_bot()
    started = slack_double.assistant_thread_started(DM, ADA)
    assert (await bot.deliver(started)).status_code == 200
    thread_ts = started["event"]["assistant_thread"]["thread_ts"]
    await bot.say(DM, ADA, "hello", thread_ts=thread_ts)
    assert openai_double.user_texts_seen()[-1] == "hello"
    await bot.say(LAUNCH, ADA, f"<@{BOT}> status?")
    assert openai_double.user_texts_seen()[-1] == "Ada: status?"
