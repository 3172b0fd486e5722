"""End to end: what the code interpreter and image generation make comes back into the Slack thread.

Each API hands a chart back its own way: the Assistants API as an image in the message, the Responses API
as a file in the code interpreter's container that the answer cites (container_file_citation). Image
generation (Responses only) streams drafts of the image, shown one at a time until the finished one replaces
them.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import BOT_TOKEN
from doubles.openai import ScriptedAnswer
from support.contract import backend_harness, final, said
from support.model_view import first_answer_requests
from support.samples import PNG
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL

from bot.conversations.backend import Completed
from bot.conversations.turn import AnswerFile, DraftImage, ReplyCompleted, Surface, Turn
from bot.slack.clients import BotIdentity, OneWorkspace, web_client
from bot.slack.directory import UserDirectory
from bot.slack.files import DRAFT_TITLE, DraftImages, share_answer_files
from bot.slack.replies import SlackPlatform, SlackReplyStream

NO_CODE_INTERPRETER = "chat completions run no code interpreter, so the model makes no files"
CHART_LINK = "sandbox:/mnt/data/chart.png"


def chart_answer(backend: str, chart_id: str) -> ScriptedAnswer:
    """The model's answer with the chart its code drew, as each API returns it."""
    if backend == "assistants":
        return ScriptedAnswer(text="Sales doubled.", image_file_ids=[chart_id])
    return ScriptedAnswer(
        text=f"Sales doubled. [The chart]({CHART_LINK})", annotations=[("file_path", CHART_LINK, chart_id)]
    )


def shared_files(slack: Any, thread_ts: str) -> list[dict[str, Any]]:
    """The files the bot's messages in the thread show (a deleted one is a tombstone in its message)."""
    return [f for m in slack.messages(CHANNEL, thread_ts=thread_ts) if m.get("bot_id") for f in m.get("files", [])]


def live_files(slack: Any, thread_ts: str) -> list[dict[str, Any]]:
    return [file for file in shared_files(slack, thread_ts) if file.get("mode") != "tombstone"]


def uploads(slack: Any) -> list[tuple[str, int]]:
    """(file name, size) of every upload the bot began, in order."""
    return [
        (str(call.params["filename"]), int(call.params["length"]))
        for call in slack.calls_to("files.getUploadURLExternal")
    ]


async def share_data(bot: Any, slack: Any, name: str, content: bytes, text: str) -> str:
    file = slack.add_file(name, content, user=ADA)
    return await bot.say(CHANNEL, ADA, f"<@{BOT}> {text}", files=[file])


@pytest.mark.backends("assistants", "responses", reason=NO_CODE_INTERPRETER)
async def test_a_chart_the_code_drew_comes_back_as_a_png_in_the_thread(
    start_bot, slack_double, openai_double, backend
) -> None:
    chart = openai_double.add_output_file("/mnt/data/chart.png", PNG)
    openai_double.script(chart_answer(backend, chart))
    bot = await start_bot()
    ts = await share_data(bot, slack_double, "sales.csv", b"month,total\nJan,10\nFeb,20\n", "chart the sales")

    [shared] = shared_files(slack_double, ts)
    assert shared["name"].endswith(".png") and shared["size"] == len(PNG)
    assert bot_texts(slack_double, CHANNEL, ts)[-1].startswith("Sales doubled.")
    # No image was drawn, so no draft: a chart is shared once it is made.
    assert len(uploads(slack_double)) == 1 and not slack_double.calls_to("files.delete")
    if backend == "responses":  # fetched from the container the code ran in
        assert openai_double.requests_to("GET", r"^/v1/containers/[^/]+/files/[^/]+/content$")
    openai_double.assert_no_violations()


@pytest.mark.backends("responses", reason="only the Responses API binds a conversation to containers that expire")
async def test_an_expired_container_is_replaced_and_the_person_is_not_told(
    start_bot, slack_double, openai_double
) -> None:
    chart = openai_double.add_output_file("/mnt/data/chart.png", PNG)
    openai_double.script(chart_answer("responses", chart), ScriptedAnswer(text="March was flat."))
    bot = await start_bot()
    ts = await share_data(bot, slack_double, "sales.csv", b"month,total\nJan,10\nFeb,20\n", "chart the sales")
    [data_file] = [file for file in openai_double.files() if file["filename"] == "sales.csv"]
    with openai_double.core.lock:
        openai_double.core.family("containers").expire_all()  # twenty idle minutes later

    await bot.say(CHANNEL, ADA, "and March?", thread_ts=ts)

    texts = bot_texts(slack_double, CHANNEL, ts)
    assert texts[-1] == "March was flat."
    assert not any("container" in text.lower() or ":warning:" in text for text in texts)
    # Refused once for the expired container, then answered in a new one that holds the shared data again.
    refused, answered = first_answer_requests(openai_double, "responses")[1:]
    assert refused.body == answered.body
    [interpreter] = [tool for tool in answered.body["tools"] if tool["type"] == "code_interpreter"]
    assert interpreter["container"] == {"type": "auto", "file_ids": [data_file["id"]]}
    assert openai_double.requests_to("DELETE", r"^/v1/conversations/[^/]+/items/[^/]+$")


@pytest.mark.backends("responses", reason="only the Responses API has an image generation tool")
async def test_image_generation_as_a_profile_tool_shares_the_image(start_bot, slack_double, openai_double) -> None:
    image = openai_double.add_output_file("lighthouse.png", PNG)
    openai_double.script(ScriptedAnswer(text="Here is your lighthouse.", image_file_ids=[image]))
    bot = await start_bot(assistant_tools="image_generation")
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> draw a lighthouse")

    [shared] = live_files(slack_double, ts)
    assert shared["name"] == "image-1.png" and shared["size"] == len(PNG)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Here is your lighthouse."
    [asked] = first_answer_requests(openai_double, "responses")
    assert {"type": "image_generation", "partial_images": 2} in asked.body["tools"]


@pytest.mark.backends("responses", reason="only the Responses API has an image generation tool, and streams drafts")
async def test_a_draft_of_the_image_shows_while_it_is_drawn_and_only_the_finished_image_stays(
    start_bot, slack_double, openai_double
) -> None:
    image = openai_double.add_output_file("lighthouse.png", PNG)
    openai_double.script(ScriptedAnswer(text="Here is your lighthouse.", image_file_ids=[image]))
    bot = await start_bot(assistant_tools="image_generation")
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> draw a lighthouse")

    # The model streamed two partial images; the second came moments after the first, so only one was shown.
    streamed = [
        event
        for response in openai_double.core.family("responses").jobs.values()
        for event in response.events
        if event.name == "response.image_generation_call.partial_image"
    ]
    assert [event.data["partial_image_index"] for event in streamed] == [0, 1]
    (draft_name, draft_size), (final_name, final_size) = uploads(slack_double)
    assert draft_name == "drawing-draft-1.png" and draft_size > len(PNG)  # the partial image's bytes, not the final's
    assert (final_name, final_size) == ("image-1.png", len(PNG))
    titles = [
        f["title"] for call in slack_double.calls_to("files.completeUploadExternal") for f in call.params["files"]
    ]
    assert titles == [DRAFT_TITLE.format(number=1), "image-1.png"]
    # What people see in the thread at the end: the answer and the finished image; the draft's file is deleted.
    draft, final = shared_files(slack_double, ts)
    assert draft["mode"] == "tombstone"
    assert [call.params["file"] for call in slack_double.calls_to("files.delete")] == [draft["id"]]
    assert (final["name"], final["size"]) == ("image-1.png", len(PNG))
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Here is your lighthouse."
    openai_double.assert_no_violations()


async def test_drafts_come_only_from_a_backend_drawing_with_image_generation(
    backend, openai_double, sqlite_url
) -> None:
    draws = backend == "responses"  # the only backend with the image_generation tool
    image = openai_double.add_output_file("cat.png", PNG)
    # Assistants shows a made image in its message; chat completions make none.
    openai_double.script(ScriptedAnswer(text="A cat.", image_file_ids=[image] if backend != "chat" else []))
    tools = "image_generation" if draws else ""
    async with backend_harness(
        backend, openai_double=openai_double, database_url=sqlite_url, assistant_tools=tools
    ) as harness:
        events = await harness.answer(said("Ev1", "Ada: draw a cat"))

    drafts = [event for event in events if isinstance(event, DraftImage)]
    assert [draft.index for draft in drafts] == ([0, 1] if draws else [])
    assert all(draft.data.startswith(PNG[:8]) and draft.data != PNG for draft in drafts)
    answer = final(events)
    assert isinstance(answer, Completed) and answer.text == "A cat."
    assert [file.data for file in answer.files] == ([PNG] if backend != "chat" else [])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_drafts_replace_each_other_at_most_one_upload_every_few_seconds(slack_double) -> None:
    root = slack_double.human_posts(CHANNEL, ADA, "draw a lighthouse").ts
    clock = Clock()
    drafts = DraftImages(
        web_client(api_url=slack_double.api_url, token=BOT_TOKEN),
        channel=CHANNEL,
        thread_ts=root,
        upload_seconds=3.0,
        clock=clock,
    )
    await drafts.show(DraftImage(0, PNG + b"0"))
    clock.now += 1.0
    await drafts.show(DraftImage(1, PNG + b"1"))  # too soon: skipped
    clock.now += 3.0
    await drafts.show(DraftImage(2, PNG + b"2"))
    assert [name for name, _ in uploads(slack_double)] == ["drawing-draft-1.png", "drawing-draft-3.png"]
    first, third = shared_files(slack_double, root)
    assert first["mode"] == "tombstone" and third["title"] == DRAFT_TITLE.format(number=3)

    await drafts.clear()
    assert all(file["mode"] == "tombstone" for file in shared_files(slack_double, root))
    assert len(slack_double.calls_to("files.delete")) == 2


async def test_the_worker_taking_over_deletes_the_dead_ones_draft_and_shares_the_finished_image_once(
    slack_double,
) -> None:
    root = slack_double.human_posts(CHANNEL, ADA, "draw a lighthouse").ts
    client = web_client(api_url=slack_double.api_url, token=BOT_TOKEN)
    finished = ReplyCompleted("Here is your lighthouse.", files=(AnswerFile("image-1.png", PNG),))
    # The worker that died: it showed its answer's message and a draft, and shared the finished image, then
    # died before the answer's last update (and before taking the draft back).
    dead = SlackReplyStream(
        client, channel=CHANNEL, thread_ts=root, in_assistant_pane=False, message_chars=3900, update_seconds=0.0
    )
    await dead.open()
    await dead.send(DraftImage(0, PNG + b"draft"))
    await share_answer_files(client, channel=CHANNEL, thread_ts=root, answer=finished)
    assert len(live_files(slack_double, root)) == 2

    clients = OneWorkspace(client, identity=BotIdentity(user_id=BOT, bot_id="B0BOT"))
    platform = SlackPlatform(clients, users=UserDirectory(clients), message_chars=3900, update_seconds=0.0)
    turn = Turn(
        event_id="Ev0DRAW",
        team_id="T0TEAM",
        channel_id=CHANNEL,
        thread_key=root,
        surface=Surface.CHANNEL,
        user_id=ADA,
        user_name="Ada",
        text="draw a lighthouse",
        message_ts=root,
        reply_thread_ts=root,
    )
    async with platform.reply(turn, resume_ts=dead.reply_ts, unrecorded_after=root) as reply:
        assert [file["name"] for file in live_files(slack_double, root)] == ["image-1.png"]  # the draft went first
        await reply.send(finished)

    [shown] = live_files(slack_double, root)
    assert (shown["name"], shown["size"]) == ("image-1.png", len(PNG))
    assert len(uploads(slack_double)) == 2  # the draft and the finished image, each once
    assert bot_texts(slack_double, CHANNEL, root) == ["Here is your lighthouse."]
