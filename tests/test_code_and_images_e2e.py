"""End to end: what the code interpreter and image generation make comes back into the Slack thread.

Each API hands a chart back its own way: the Assistants API as an image in the message, the Responses API
as a file in the code interpreter's container that the answer cites (container_file_citation).
"""

from __future__ import annotations

from typing import Any

import pytest
from doubles.openai import ScriptedAnswer
from support.model_view import first_answer_requests
from support.samples import PNG
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL

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
    return [f for m in slack.messages(CHANNEL, thread_ts=thread_ts) if m.get("bot_id") for f in m.get("files", [])]


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

    [shared] = shared_files(slack_double, ts)
    assert shared["name"] == "image-1.png" and shared["size"] == len(PNG)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Here is your lighthouse."
    [asked] = first_answer_requests(openai_double, "responses")
    # Partial images are not asked for: each would be an upload of its own (see responses/progress.py).
    assert {"type": "image_generation"} in asked.body["tools"]
