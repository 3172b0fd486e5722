"""End to end: moderation keeps flagged messages from the assistant and flagged answers from the channel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from doubles.openai import ScriptedRun
from support.model_view import answers_stopped, conversations_seen
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import BOT, CHANNEL, DM

from bot.store.moderation_log import ModerationLog

MODERATIONS = r"^/v1/moderations$"
# The double answers a moderation failure's retries at once when it says so.
NO_WAIT = {"Retry-After": "0"}
PNG = b"\x89PNG\r\n\x1a\n"


def requests_besides_checks(openai_double) -> list[str]:
    """What the bot asked of the API other than moderation and transcription: uploads, threads, answers..."""
    checks = ("/v1/moderations", "/v1/audio/transcriptions")
    return [f"{request.method} {request.path}" for request in openai_double.requests if request.path not in checks]


def ephemeral_texts(slack_double, channel: str, user: str) -> list[str]:
    return [message["text"] for message in slack_double.ephemeral(channel, user)]


async def flags(bot) -> list:
    return list(await ModerationLog(bot.bot.store).recent(limit=20))


async def test_a_flagged_message_never_reaches_the_assistant_and_the_thread_stays_usable(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence", "harassment/threatening"]}
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> how do I hurt someone?")

    assert openai_double.requests_to("POST", MODERATIONS)[0].body == {
        "input": "Ada: how do I hurt someone?",
        "model": "omni-moderation-latest",
    }
    assert requests_besides_checks(openai_double) == [] and openai_double.model_calls == 0
    assert bot_texts(slack_double, CHANNEL, ts) == []  # no "Thinking…" left behind
    [notice] = ephemeral_texts(slack_double, CHANNEL, "U0ADA")
    assert "didn't pass your message to the assistant" in notice and "threats and violence" in notice
    [flag] = await flags(bot)
    assert (flag.team_id, flag.channel_id, flag.user_id, flag.direction, flag.source) == (
        "T0TEAM",
        CHANNEL,
        "U0ADA",
        "input",
        "text",
    )
    assert flag.categories == ["harassment/threatening", "violence"]
    assert flag.top_scores["violence"] == 0.97 and len(flag.top_scores) == 3
    assert flag.flagged_text is None  # MODERATION_KEEP_TEXT is off

    await bot.say(CHANNEL, "U0BOB", "what is the capital of France?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Bob: what is the capital of France?"]
    # The new conversation is seeded from the Slack thread's history: the flagged message stays out of it.
    inputs = [request.body["input"] for request in openai_double.requests_to("POST", MODERATIONS)]
    history_checks = [checked for checked in inputs if isinstance(checked, list)]
    assert len(history_checks) == 1 and "hurt someone" in history_checks[0][0]
    assert openai_double.model_calls == 1
    assert conversations_seen(openai_double)[-1] == [("user", "Bob: what is the capital of France?")]


async def test_in_a_batch_only_the_flagged_message_is_left_out(start_bot, slack_double, openai_double) -> None:
    openai_double.moderation_flags = {"slur": ["hate"]}
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    await bot.say(CHANNEL, "U0BOB", "a slur here", thread_ts=ts)
    await bot.say(CHANNEL, "U0ADA", "and a fine question", thread_ts=ts)
    assert openai_double.model_calls == 2
    assert openai_double.user_texts_seen() == ["Ada: hello", "Ada: and a fine question"]
    assert not any("slur" in text for seen in openai_double.model_inputs() for _, text in seen)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello", "Echo: Ada: and a fine question"]
    assert "hate" in ephemeral_texts(slack_double, CHANNEL, "U0BOB")[0]
    assert ephemeral_texts(slack_double, CHANNEL, "U0ADA") == []


async def test_where_no_ephemeral_message_can_go_the_notice_goes_in_the_thread(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    bot = await start_bot()
    pane = slack_double.assistant_thread_started(DM, "U0ADA")
    assert (await bot.deliver(pane)).status_code == 200
    pane_ts = pane["event"]["assistant_thread"]["thread_ts"]
    await bot.say(DM, "U0ADA", "how do I hurt someone?", thread_ts=pane_ts)
    assert "flagged it for violence" in bot_texts(slack_double, DM, pane_ts)[-1]
    assert slack_double.current_status(DM, pane_ts) == ""

    slack_double.fail_next("chat.postEphemeral", error="user_not_in_channel")
    ts = await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> how do I hurt someone?")
    [notice] = bot_texts(slack_double, CHANNEL, ts)
    assert "flagged it for violence" in notice
    assert slack_double.ephemeral(DM) == slack_double.ephemeral(CHANNEL) == []
    assert requests_besides_checks(openai_double) == [] and openai_double.model_calls == 0


async def test_the_operator_can_keep_flagged_text_and_read_the_log(
    start_bot, slack_double, openai_double, tmp_path: Path
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    database = tmp_path / "bot.sqlite3"
    bot = await start_bot(moderation_keep_text=True, database_url=f"sqlite:///{database}")
    await bot.say(DM, "U0ADA", "how do I hurt someone?")
    [flag] = await flags(bot)
    assert flag.flagged_text == "how do I hurt someone?"

    environment = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_"))}
    environment |= {
        "SLACK_BOT_TOKEN": "xoxb-cli-test-token-123",
        "SLACK_SIGNING_SECRET": "cli-signing-secret-456",
        "OPENAI_API_KEY": "sk-cli-test-key-789",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "bot", "moderation-log", "--limit", "5", "--team", "T0TEAM"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    header, rule, row = shown.stdout.splitlines()
    assert header.split()[:3] == ["when", "(UTC)", "team"] and set(rule) == {"-", " "}
    assert all(word in row for word in ("T0TEAM", DM, "U0ADA", "input", "text", "violence 0.97", "how do I hurt"))
    other_team = subprocess.run(
        [sys.executable, "-m", "bot", "moderation-log", "--team", "T0OTHER"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other_team.stdout.strip() == "no moderation flags recorded"


async def test_a_flagged_image_is_neither_uploaded_nor_added(start_bot, slack_double, openai_double) -> None:
    openai_double.moderation_flags = {"GORE-PIXELS": ["violence/graphic"]}
    image = slack_double.add_file("scene.png", PNG + b"GORE-PIXELS", user="U0ADA", mimetype="image/png")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what is in this picture?", files=[image])

    [moderation] = openai_double.requests_to("POST", MODERATIONS)
    text_part, image_part = moderation.body["input"]
    assert text_part == {"type": "text", "text": "Ada: what is in this picture?"}
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert requests_besides_checks(openai_double) == [] and openai_double.model_calls == 0  # nothing uploaded
    assert bot_texts(slack_double, CHANNEL, ts) == []
    [notice] = ephemeral_texts(slack_double, CHANNEL, "U0ADA")
    assert "your message or an image you shared" in notice and "graphic violence" in notice
    [flag] = await flags(bot)
    assert (flag.source, flag.categories) == ("text+image", ["violence/graphic"])


async def test_a_flagged_voice_clip_transcript_is_neither_shown_nor_added(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.transcripts = {"memo.m4a": "Here is how to make a PIPE-BOMB at home."}
    openai_double.moderation_flags = {"PIPE-BOMB": ["illicit/violent"]}
    clip = slack_double.add_file("memo.m4a", b"\x00\x00\x00\x18ftypM4A ", user="U0ADA", mimetype="audio/mp4")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> listen to this", files=[clip])

    [moderation] = openai_double.requests_to("POST", MODERATIONS)
    assert "Ada: listen to this" in moderation.body["input"] and "PIPE-BOMB" in moderation.body["input"]
    assert openai_double.requests_to("POST", r"^/v1/audio/transcriptions$")  # it was heard, then checked
    assert requests_besides_checks(openai_double) == [] and openai_double.model_calls == 0  # nothing uploaded
    assert not any("PIPE-BOMB" in text for text in bot_texts(slack_double, CHANNEL, ts))  # the transcript is not shown
    [notice] = ephemeral_texts(slack_double, CHANNEL, "U0ADA")
    assert "your message or voice clip" in notice and "violent illicit activity" in notice
    [flag] = await flags(bot)
    assert (flag.source, flag.categories) == ("transcript", ["illicit/violent"])


async def test_a_flagged_answer_is_stopped_before_anyone_sees_it(
    start_bot, slack_double, openai_double, backend
) -> None:
    answer = "Sure, here is a calm overview. Step one: DANGEROUS-RECIPE with details. Step two: more."
    openai_double.moderation_flags = {"DANGEROUS-RECIPE": ["illicit/violent"]}
    # Paced so that the answer is still being written when the bot stops it, even on a loaded machine.
    openai_double.script(ScriptedRun(text=answer, chunks=16, chunk_delay=0.3))
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> tell me something")

    [reply] = slack_double.bot_messages(CHANNEL, thread_ts=ts)
    history = slack_double.update_history(CHANNEL, reply["ts"])
    assert any(text.startswith("Sure, here is") for text in history)  # checked text did stream
    assert len(slack_double.calls_to("chat.stopStream")) == 1  # the stream was stopped, then the message replaced
    assert not any("DANGEROUS-RECIPE" in text or "Step two" in text for text in history)
    assert history[-1] == (
        ":no_entry: I stopped this answer: content moderation flagged it for violent illicit activity."
    )
    checked = [request.body["input"] for request in openai_double.requests_to("POST", MODERATIONS)[1:]]
    assert len(checked) <= 16 and "DANGEROUS-RECIPE" in checked[-1]  # at most one check per update; none after
    assert not any("Step two" in text for text in checked)

    await eventually(lambda: answers_stopped(openai_double, backend) == 1, what="the answer stopped on the server")
    [flag] = await flags(bot)
    assert (flag.direction, flag.source, flag.user_id) == ("output", "answer", "U0ADA")

    await bot.say(CHANNEL, "U0ADA", "something else then", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: something else then"


@pytest.mark.parametrize(
    ("thresholds", "blocked"),
    [({}, False), ({"harassment": 0.5}, False), ({"harassment": 0.4, "violence": 0.9}, True)],
)
async def test_thresholds_tighten_the_api_verdict(start_bot, slack_double, openai_double, thresholds, blocked) -> None:
    openai_double.moderation_scores = {"you fool": {"harassment": 0.45}}
    bot = await start_bot(moderation_thresholds=thresholds, moderation="input")
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> you fool")
    assert bot_texts(slack_double, CHANNEL, ts) == ([] if blocked else ["Echo: Ada: you fool"])
    assert [flag.categories for flag in await flags(bot)] == ([["harassment"]] if blocked else [])
    if blocked:
        assert "for harassment" in ephemeral_texts(slack_double, CHANNEL, "U0ADA")[0]


@pytest.mark.parametrize(
    ("mode", "checked_input", "shown"),
    [
        ("off", False, "Echo: Ada: RED-FLAG"),
        ("input", True, None),
        ("output", False, ":no_entry: I stopped this answer: content moderation flagged it for self-harm."),
        ("both", True, None),
    ],
)
async def test_each_moderation_mode(start_bot, slack_double, openai_double, mode, checked_input, shown) -> None:
    openai_double.moderation_flags = {"RED-FLAG": ["self-harm"]}  # the echoed answer repeats it
    bot = await start_bot(moderation=mode)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> RED-FLAG")
    inputs = [request.body["input"] for request in openai_double.requests_to("POST", MODERATIONS)]
    assert ("Ada: RED-FLAG" in inputs) is checked_input
    assert bot_texts(slack_double, CHANNEL, ts) == ([shown] if shown else [])
    assert openai_double.model_calls == (0 if checked_input else 1)
    assert [flag.direction for flag in await flags(bot)] == (
        [] if mode == "off" else ["input"] if checked_input else ["output"]
    )
    if mode == "off":
        assert inputs == []


async def test_moderation_down_blocks_by_default(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()  # before the failures: its start-up check probes /moderations too
    openai_double.fail_next("POST", MODERATIONS, status=503, headers=NO_WAIT, times=3)  # the first try and 2 retries
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> a perfectly fine question")
    assert len(openai_double.requests_to("POST", MODERATIONS)) == 3
    assert requests_besides_checks(openai_double) == [] and openai_double.model_calls == 0
    assert bot_texts(slack_double, CHANNEL, ts) == []
    assert "Please try again in a moment" in ephemeral_texts(slack_double, CHANNEL, "U0ADA")[0]
    assert await flags(bot) == []

    await bot.say(CHANNEL, "U0ADA", "again, please", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: again, please"]


async def test_moderation_down_withholds_an_unchecked_answer_by_default(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(moderation="output")
    openai_double.fail_next("POST", MODERATIONS, status=500, headers=NO_WAIT, times=3)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    [reply] = slack_double.bot_messages(CHANNEL, thread_ts=ts)
    assert not any("Echo" in text for text in slack_double.update_history(CHANNEL, reply["ts"]))
    assert reply["text"].startswith(":warning: I couldn't check this answer with content moderation")


async def test_moderation_down_can_be_allowed_through(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(moderation_on_error="allow")  # before the failures: its start-up check probes them too
    openai_double.fail_next("POST", MODERATIONS, status=500, headers=NO_WAIT, times=100)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> unchecked but fine")
    assert len(openai_double.requests_to("POST", MODERATIONS)) >= 6  # input and answer were both tried
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: unchecked but fine"]
    assert openai_double.model_calls == 1 and openai_double.user_texts_seen() == ["Ada: unchecked but fine"]
    assert ephemeral_texts(slack_double, CHANNEL, "U0ADA") == []
