"""End to end: remote MCP tools with Approve / Deny in Slack, against the Slack, OpenAI and MCP doubles.

The Responses double plays the model and the platform (it lists the MCP double's tools, asks for approval,
calls the tool); the MCP double is the company's server, behind an API key the bot keeps encrypted.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import pytest
from conftest import SIGNING_SECRET
from cryptography.fernet import Fernet
from doubles.mcp import McpDouble, McpTool
from doubles.openai.responses_mcp import McpPlan
from doubles.slack_events import block_action_body, deliver_form, slash_command_body, view_submission_body
from sqlalchemy import select
from support.bot_processes import turn_statuses
from support.commands import click, ephemeral_texts, last_ephemeral
from support.slack_view import bot_texts, post
from support.waiting import eventually
from support.workspace import ADA, BOB, BOT, CHANNEL

from bot.store.channels import ChannelStore
from bot.store.models import McpApproval, McpServerRecord, McpToolCall

TEAM = "T0TEAM"
KEY = Fernet.generate_key().decode()
SECRET = "crm-api-key-5d21e9"
QUESTION = f"<@{BOT}> how many open orders has Acme?"
TOOL_OUTPUT = "Acme has 3 open orders."
ANSWER = f"The tool said: {TOOL_OUTPUT}"
DENIED = "I did not run lookup: it was not approved."
RESPONSES_ONLY = pytest.mark.backends("responses", reason="remote MCP tools exist only on the Responses API")
_triggers = itertools.count(1)


@pytest.fixture
def mcp_server() -> Any:
    server = McpDouble(required_headers={"X-Api-Key": SECRET}).start()
    server.add_tool(McpTool("lookup", "Open orders of a customer", lambda arguments: TOOL_OUTPUT))
    yield server
    server.stop()
    assert server.violations == []


def plan_lookup(openai: Any) -> None:
    openai.core.family("responses").mcp.will_call(McpPlan("crm", "lookup", {"customer": "Acme"}))


async def command(bot: Any, slack: Any, text: str, *, user: str = ADA) -> None:
    """`/assistant <text>` as Slack posts it, to a bot in-process (its work then settles) or in a process."""
    body = slash_command_body(
        "/assistant",
        text,
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=user,
        response_url=slack.new_response_url(channel=CHANNEL, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    if hasattr(bot, "settle"):
        await bot.settle()


def mcp_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "mcp_secret_key": KEY,
        "mcp_allow_http_loopback": True,
        "admin_user_ids": [ADA],
        **overrides,
    }


async def bot_with_crm(start_bot: Any, slack: Any, mcp_server: Any, **overrides: Any) -> Any:
    """A bot whose workspace registered the CRM server (approval always) and whose channel's assistant uses it."""
    bot = await start_bot(**mcp_settings(**overrides))
    await command(
        bot, slack, f"mcp add crm {mcp_server.url} tools=lookup approval=always header=X-Api-Key secret={SECRET}"
    )
    await bot.settle()
    assert "stored encrypted and will not be shown again" in last_ephemeral(slack, user=ADA)
    await command(bot, slack, "mcp enable crm")
    await bot.settle()
    assert "now uses *crm*" in last_ephemeral(slack, user=ADA)
    return bot


def approval_prompts(slack: Any, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's messages in the thread that carry Approve / Deny buttons."""
    return [
        message
        for message in slack.bot_messages(CHANNEL, thread_ts=thread_ts)
        if any(
            element.get("action_id") == "mcp_approve"
            for block in message.get("blocks") or []
            if block.get("type") == "actions"
            for element in block.get("elements") or []
        )
    ]


def approval_id_of(prompt: dict[str, Any]) -> str:
    actions = next(block for block in prompt["blocks"] if block.get("type") == "actions")
    return str(actions["elements"][0]["value"])


def response_requests(openai: Any) -> list[Any]:
    return openai.requests_to("POST", r"^/v1/responses$")


async def records_of(bot: Any, model: Any) -> list[Any]:
    async with bot.bot.store.transaction() as session:
        return list(await session.scalars(select(model)))


# Approve, deny, someone else, timeout ------------------------------------------------------------


@RESPONSES_ONLY
async def test_approved_the_tool_runs_with_its_secret_and_the_answer_continues_in_the_same_message(
    start_bot, openai_double, slack_double, mcp_server, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)

    [prompt] = approval_prompts(slack_double, ts)
    assert f"<@{ADA}>" in prompt["text"] and "*lookup*" in prompt["text"] and "*crm*" in prompt["text"]
    [waiting] = [m for m in slack_double.bot_messages(CHANNEL, thread_ts=ts) if m["text"].startswith("Waiting")]
    assert waiting["text"] == "Waiting for approval to use lookup (crm)."
    assert mcp_server.tool_calls() == []  # nothing ran before the click
    assert await turn_statuses(bot.bot.settings.database_url) == ["waiting"]

    await click(bot, slack_double, action_id="mcp_approve", value=approval_id_of(prompt), message=prompt, user=ADA)

    # The prompt says who approved; the answer replaced the waiting note in its own message.
    assert bot_texts(slack_double, CHANNEL, ts) == [f"Approved by <@{ADA}>: running *lookup* on *crm*.", ANSWER]
    assert [m["text"] for m in slack_double.bot_messages(CHANNEL, thread_ts=ts) if m["ts"] == waiting["ts"]] == [ANSWER]
    assert mcp_server.tool_calls() == [("lookup", {"customer": "Acme"})]
    assert {call.headers.get("x-api-key") for call in mcp_server.calls} == {SECRET}
    first, second = response_requests(openai_double)
    [tool] = [tool for tool in first.body["tools"] if tool["type"] == "mcp"]
    assert tool == {
        "type": "mcp",
        "server_label": "crm",
        "server_url": mcp_server.url,
        "require_approval": "always",
        "allowed_tools": ["lookup"],
        "headers": {"X-Api-Key": SECRET},
    }
    assert second.body["conversation"] == first.body["conversation"]
    assert second.body["input"] == [
        {"type": "mcp_approval_response", "approval_request_id": approval_id_of(prompt), "approve": True}
    ]
    [approval] = await records_of(bot, McpApproval)
    assert (approval.decision, approval.decided_by, approval.server_label, approval.tool_name) == (
        "approved",
        ADA,
        "crm",
        "lookup",
    )
    assert [
        (call.server_label, call.tool_name, call.asked_by, call.outcome) for call in await records_of(bot, McpToolCall)
    ] == [("crm", "lookup", ADA, "completed")]
    assert await turn_statuses(bot.bot.settings.database_url) == ["answered"]
    # The secret is in the request to the API (that is how the API reaches the server) and nowhere else.
    [server_row] = await records_of(bot, McpServerRecord)
    assert SECRET not in (server_row.secret_ciphertext or "")
    shown = [m["text"] for m in slack_double.messages(CHANNEL, thread_ts=ts)] + ephemeral_texts(slack_double, user=ADA)
    assert not [text for text in shown if SECRET in text]
    assert SECRET not in caplog.text


@RESPONSES_ONLY
async def test_denied_the_tool_never_runs_and_the_answer_says_so(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)
    [prompt] = approval_prompts(slack_double, ts)

    await click(bot, slack_double, action_id="mcp_deny", value=approval_id_of(prompt), message=prompt, user=ADA)

    assert bot_texts(slack_double, CHANNEL, ts) == [f"Denied by <@{ADA}>: *lookup* on *crm* was not run.", DENIED]
    assert [call for call in mcp_server.tool_calls()] == []
    assert response_requests(openai_double)[-1].body["input"][0]["approve"] is False
    [approval] = await records_of(bot, McpApproval)
    assert (approval.decision, approval.decided_by) == ("denied", ADA)


@RESPONSES_ONLY
async def test_a_click_by_someone_else_is_refused_privately_and_the_asker_still_decides(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)
    [prompt] = approval_prompts(slack_double, ts)
    requests_before = len(response_requests(openai_double))

    await click(bot, slack_double, action_id="mcp_approve", value=approval_id_of(prompt), message=prompt, user=BOB)

    assert last_ephemeral(slack_double, user=BOB) == "Only the person who asked can approve or deny this tool call."
    assert approval_prompts(slack_double, ts) == [prompt]  # still waiting, buttons and all
    assert len(response_requests(openai_double)) == requests_before
    assert mcp_server.tool_calls() == []

    await click(bot, slack_double, action_id="mcp_approve", value=approval_id_of(prompt), message=prompt, user=ADA)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == ANSWER
    # A second click on a decided request changes nothing.
    await click(bot, slack_double, action_id="mcp_deny", value=approval_id_of(prompt), message=prompt, user=ADA)
    assert last_ephemeral(slack_double, user=ADA) == "This tool call was already decided."
    assert mcp_server.tool_calls() == [("lookup", {"customer": "Acme"})]


@RESPONSES_ONLY
async def test_a_message_sent_while_an_answer_waits_is_answered_after_it_in_order(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)
    [prompt] = approval_prompts(slack_double, ts)

    await bot.say(CHANNEL, ADA, f"<@{BOT}> and what about Globex?", thread_ts=ts)

    assert bot_texts(slack_double, CHANNEL, ts)[-1] == (
        "I'll answer this once the tool call waiting for approval above is decided."
    )
    assert len(response_requests(openai_double)) == 1  # nothing overtook the waiting answer
    await click(bot, slack_double, action_id="mcp_approve", value=approval_id_of(prompt), message=prompt, user=ADA)

    assert bot_texts(slack_double, CHANNEL, ts)[-2:] == [ANSWER, "Echo: Ada: and what about Globex?"]
    assert len(response_requests(openai_double)) == 3
    assert await turn_statuses(bot.bot.settings.database_url) == ["answered", "answered"]


@RESPONSES_ONLY
async def test_an_admin_may_decide_when_the_operator_allows_it(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server, mcp_admins_may_approve=True)
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, BOB, QUESTION)  # Bob asks; Ada is an admin
    [prompt] = approval_prompts(slack_double, ts)
    assert f"<@{BOB}>" in prompt["text"]

    await click(bot, slack_double, action_id="mcp_approve", value=approval_id_of(prompt), message=prompt, user=ADA)

    assert bot_texts(slack_double, CHANNEL, ts)[-1] == ANSWER
    [approval] = await records_of(bot, McpApproval)
    assert (approval.asker_id, approval.decided_by) == (BOB, ADA)


@RESPONSES_ONLY
async def test_a_request_nobody_decides_is_denied_at_the_timeout_and_the_thread_says_so(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    # Long enough for the prompt to be posted before it times out, even on a loaded machine.
    bot = await bot_with_crm(start_bot, slack_double, mcp_server, mcp_approval_timeout_seconds=3.0)
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)
    assert len(approval_prompts(slack_double, ts)) == 1

    timed_out = "Nobody approved *lookup* on *crm* in time, so it was denied and not run."
    await eventually(lambda: bot_texts(slack_double, CHANNEL, ts) == [timed_out, DENIED], what="the timeout's denial")
    await bot.settle()
    assert mcp_server.tool_calls() == []
    assert response_requests(openai_double)[-1].body["input"][0]["approve"] is False
    [approval] = await records_of(bot, McpApproval)
    assert (approval.decision, approval.decided_by) == ("timed_out", None)
    assert await turn_statuses(bot.bot.settings.database_url) == ["answered"]


# A server that is down, a policy that needs no approval -------------------------------------------


@RESPONSES_ONLY
async def test_a_server_that_is_down_gets_a_clear_note_and_the_answer_goes_on_without_it(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    mcp_server.stop()
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)

    assert bot_texts(slack_double, CHANNEL, ts) == ["I could not reach crm, so I answered without it."]
    assert approval_prompts(slack_double, ts) == []
    (answer,) = slack_double.bot_messages(CHANNEL, ts)
    tasks = [c for c in slack_double.streamed_chunks(CHANNEL, answer["ts"]) if c["type"] == "task_update"]
    assert [t["title"] for t in tasks] == ["Calling crm (unreachable)"] and tasks[0]["status"] != "complete"
    assert [(call.server_label, call.outcome) for call in await records_of(bot, McpToolCall)] == [
        ("crm", "unreachable")
    ]
    assert await turn_statuses(bot.bot.settings.database_url) == ["answered"]


@RESPONSES_ONLY
async def test_a_tool_the_policy_lets_run_is_called_without_asking(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await start_bot(**mcp_settings())
    await command(bot, slack_double, f"mcp add crm {mcp_server.url} approval=never header=X-Api-Key secret={SECRET}")
    await command(bot, slack_double, "mcp enable crm")
    await bot.settle()
    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)

    assert bot_texts(slack_double, CHANNEL, ts) == [ANSWER]
    assert approval_prompts(slack_double, ts) == []
    (answer,) = slack_double.bot_messages(CHANNEL, ts)
    tasks = [c for c in slack_double.streamed_chunks(CHANNEL, answer["ts"]) if c["type"] == "task_update"]
    assert [(t["title"], t["status"]) for t in tasks] == [
        ("Calling crm/lookup", "in_progress"),
        ("Calling crm/lookup", "complete"),
    ]
    [tool] = [tool for tool in response_requests(openai_double)[0].body["tools"] if tool["type"] == "mcp"]
    assert tool["require_approval"] == "never" and "allowed_tools" not in tool


# Registration --------------------------------------------------------------------------------------


@RESPONSES_ONLY
async def test_registration_is_for_admins_https_only_and_the_list_never_shows_the_secret(
    start_bot, slack_double, mcp_server
) -> None:
    bot = await start_bot(mcp_secret_key=KEY, admin_user_ids=[ADA])  # http on loopback not allowed here
    await command(bot, slack_double, f"mcp add crm {mcp_server.url}", user=BOB)
    await bot.settle()
    assert "Only workspace admins" in last_ephemeral(slack_double, user=BOB)
    await command(bot, slack_double, f"mcp add crm {mcp_server.url}")
    await bot.settle()
    assert last_ephemeral(slack_double, user=ADA) == "MCP servers must be reached over https."
    await command(
        bot, slack_double, f"mcp add crm https://crm.example.com/mcp approval=lookup header=X-Api-Key secret={SECRET}"
    )
    await command(bot, slack_double, "mcp list", user=BOB)
    await bot.settle()
    listed = last_ephemeral(slack_double, user=BOB)
    assert "*crm* https://crm.example.com/mcp: every tool it lists; approval for `lookup`" in listed
    assert "secret header `X-Api-Key` (set)" in listed and SECRET not in listed
    await command(bot, slack_double, "mcp remove crm")
    await command(bot, slack_double, "mcp list", user=BOB)
    await bot.settle()
    assert last_ephemeral(slack_double, user=BOB).startswith("No MCP servers are registered in this workspace.")


@pytest.mark.backends("assistants", "chat", reason="the refusal is for the backends without MCP tools")
async def test_backends_without_mcp_refuse_it_naming_the_backend(start_bot, slack_double, backend) -> None:
    bot = await start_bot(mcp_secret_key=KEY, admin_user_ids=[ADA])
    await command(bot, slack_double, "mcp add crm https://crm.example.com/mcp")
    await command(bot, slack_double, "mcp enable crm")
    await bot.settle()
    assert (
        ephemeral_texts(slack_double, user=ADA)[-2:]
        == [f"MCP tools need the `responses` backend; this bot runs on the `{backend}` backend, which has none."] * 2
    )


# A crash while waiting -------------------------------------------------------------------------------


@RESPONSES_ONLY
async def test_a_bot_killed_while_waiting_loses_nothing_and_the_click_completes_the_answer_once(
    bot_processes, database_url, openai_double, slack_double, mcp_server
) -> None:
    settings = {"MCP_SECRET_KEY": KEY, "MCP_ALLOW_HTTP_LOOPBACK": "true", "ADMIN_USER_IDS": ADA}
    first = bot_processes(database_url, **settings)
    await first.wait_ready()
    await command(first, slack_double, f"mcp add crm {mcp_server.url} tools=lookup header=X-Api-Key secret={SECRET}")
    await eventually(lambda: len(ephemeral_texts(slack_double, user=ADA)) == 1, what="the registration")
    await command(first, slack_double, "mcp enable crm")
    await eventually(lambda: len(ephemeral_texts(slack_double, user=ADA)) == 2, what="the channel's assistant using it")
    plan_lookup(openai_double)
    ts = (await post(first, slack_double, QUESTION)).ts
    prompt = (await eventually(lambda: approval_prompts(slack_double, ts), what="the approval prompt"))[0]

    async def parked() -> bool:
        return await turn_statuses(database_url) == ["waiting"]

    await eventually(parked, what="the batch parked, its lease released")
    first.kill()

    second = bot_processes(database_url, **settings)
    await second.wait_ready()
    body = block_action_body(
        action_id="mcp_approve",
        value=approval_id_of(prompt),
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=ADA,
        message=prompt,
        response_url=slack_double.new_response_url(channel=CHANNEL, user=ADA),
        trigger_id="trigger-crash",
    )
    assert (await deliver_form(second.url, body, SIGNING_SECRET)).status_code == 200

    async def answered() -> bool:
        return await turn_statuses(database_url) == ["answered"]

    await eventually(answered, what="the answer finished by the restarted bot")
    assert bot_texts(slack_double, CHANNEL, ts) == [f"Approved by <@{ADA}>: running *lookup* on *crm*.", ANSWER]
    assert mcp_server.tool_calls() == [("lookup", {"customer": "Acme"})]
    assert len(response_requests(openai_double)) == 2  # the question's, and the approval's: none twice


# Function calls beside an approval request ---------------------------------------------------------


@RESPONSES_ONLY
async def test_function_calls_beside_an_approval_request_run_and_the_model_gets_their_outputs_with_the_decision(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    openai_double.core.family("responses").mcp.will_call(
        McpPlan("crm", "lookup", {"customer": "Acme"}, function_calls=(("read_thread", {}),))
    )
    ts = await bot.say(CHANNEL, ADA, QUESTION)

    # The function ran at once; the MCP tool waits for the click.
    [prompt] = approval_prompts(slack_double, ts)
    assert mcp_server.tool_calls() == []

    def thread_reads() -> int:
        """read_thread's reads of the thread (the bot's own look for its reply messages is not inclusive)."""
        return len([call for call in slack_double.calls_to("conversations.replies") if call.params.get("inclusive")])

    assert thread_reads() == 1
    [first] = [r for r in openai_double.core.family("responses").response_objects() if r["output"]]
    [function_call] = [item for item in first["output"] if item["type"] == "function_call"]

    await click(bot, slack_double, action_id="mcp_approve", value=approval_id_of(prompt), message=prompt, user=ADA)

    # The answer's message began with the function's task, before the prompt was posted; it is finished in place.
    assert bot_texts(slack_double, CHANNEL, ts) == [
        f"I ran read_thread too. {ANSWER}",
        f"Approved by <@{ADA}>: running *lookup* on *crm*.",
    ]
    assert mcp_server.tool_calls() == [("lookup", {"customer": "Acme"})]
    assert thread_reads() == 1  # the function ran once: its output waited in the checkpoint
    # One request carried both: the function's output and the approval.
    _, second = response_requests(openai_double)
    [output, approval] = second.body["input"]
    assert (output["type"], output["call_id"]) == ("function_call_output", function_call["call_id"])
    assert [message["text"] for message in json.loads(output["output"])["messages"]] == [
        "@Assistant how many open orders has Acme?"
    ]
    assert approval == {"type": "mcp_approval_response", "approval_request_id": approval_id_of(prompt), "approve": True}
    assert await turn_statuses(bot.bot.settings.database_url) == ["answered"]


# Each call recorded once -------------------------------------------------------------------------------


@RESPONSES_ONLY
async def test_a_call_whose_response_is_read_again_after_a_failed_delivery_is_recorded_once(
    start_bot, openai_double, slack_double, mcp_server, database_url
) -> None:
    # No update while the answer streams: the one chat.update is the final answer's. Slack failing it for now
    # sends the turn back to be tried again, which follows the same response again, its MCP call and all.
    bot = await start_bot(database_url=database_url, sweep_seconds=0.1, stream_update_seconds=60.0, **mcp_settings())
    await command(bot, slack_double, f"mcp add crm {mcp_server.url} approval=never header=X-Api-Key secret={SECRET}")
    await command(bot, slack_double, "mcp enable crm")
    plan_lookup(openai_double)
    slack_double.fail_next("chat.update", error="internal_error")
    ts = await bot.say(CHANNEL, ADA, QUESTION)

    async def answered() -> bool:
        return await turn_statuses(database_url) == ["answered"]

    await eventually(answered, what="the turn answered on its second attempt")
    assert bot_texts(slack_double, CHANNEL, ts) == [ANSWER]
    assert len(response_requests(openai_double)) == 1  # the second attempt followed the response, asked nothing
    assert [(call.server_label, call.tool_name, call.outcome) for call in await records_of(bot, McpToolCall)] == [
        ("crm", "lookup", "completed")
    ]


# The assistant form and /assistant show ------------------------------------------------------------------


def form_of(slack: Any) -> dict[str, Any]:
    """The modal the newest views.open opened, as Slack keeps it."""
    opened = slack.calls_to("views.open")[-1].response["view"]["id"]
    return next(view for view in slack.views() if view["id"] == opened)


def mcp_field(view: dict[str, Any]) -> dict[str, Any] | None:
    return next((block for block in view["blocks"] if block.get("block_id") == "mcp_servers"), None)


def options(*values: str) -> list[dict[str, Any]]:
    return [{"text": {"type": "plain_text", "text": value}, "value": value} for value in values]


async def submit_form(bot: Any, view: dict[str, Any], *, name: str, mcp_servers: tuple[str, ...] | None) -> Any:
    """The form submitted with a name, the model it offers first (or its chosen one) and these servers checked."""
    model = next(block for block in view["blocks"] if block.get("block_id") == "model")["element"]
    chosen = model.get("initial_option") or model["option_groups"][-1]["options"][0]
    values: dict[str, Any] = {
        "name": {"value": {"type": "plain_text_input", "value": name}},
        "model": {"value": {"type": "static_select", "selected_option": chosen}},
        "tools": {"value": {"type": "checkboxes", "selected_options": []}},
    }
    if mcp_servers is not None:
        values["mcp_servers"] = {"value": {"type": "checkboxes", "selected_options": options(*mcp_servers)}}
    body = view_submission_body(view, values, team_id=TEAM, user_id=ADA, trigger_id=f"trigger-{next(_triggers)}")
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()
    return response.json() if response.content else None


def mcp_tools_sent(openai: Any) -> list[str]:
    """The MCP servers the newest response request offered the model."""
    return [tool["server_label"] for tool in response_requests(openai)[-1].body["tools"] if tool["type"] == "mcp"]


async def assistant_changes(bot: Any) -> list[tuple[str, str]]:
    rows = await ChannelStore(bot.bot.store).assistant_changes(team_id=TEAM, channel_id=CHANNEL)
    return [(row.user_id, row.action) for row in rows]


@RESPONSES_ONLY
async def test_the_assistant_form_switches_the_workspaces_servers_and_show_names_them(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await start_bot(**mcp_settings())
    await command(bot, slack_double, f"mcp add crm {mcp_server.url} approval=never header=X-Api-Key secret={SECRET}")
    await command(bot, slack_double, "mcp add jira https://jira.example.com/mcp")
    await command(bot, slack_double, "create")
    form = form_of(slack_double)
    field = mcp_field(form)
    assert field is not None and field["element"]["type"] == "checkboxes"
    assert [option["value"] for option in field["element"]["options"]] == ["crm", "jira"]
    assert "initial_options" not in field["element"]

    saved = await submit_form(bot, form, name="Sales helper", mcp_servers=("crm", "jira"))
    assert saved["response_action"] == "update"
    await command(bot, slack_double, "show")
    assert "MCP: crm, jira" in last_ephemeral(slack_double, user=ADA)
    assert "mcp:" not in last_ephemeral(slack_double, user=ADA)

    await command(bot, slack_double, "edit")
    form = form_of(slack_double)
    field = mcp_field(form)
    assert field is not None and [option["value"] for option in field["element"]["initial_options"]] == ["crm", "jira"]
    await submit_form(bot, form, name="Sales helper", mcp_servers=("crm",))
    await command(bot, slack_double, "show")
    shown = last_ephemeral(slack_double, user=ADA)
    assert "MCP: crm" in shown and "jira" not in shown
    assert await assistant_changes(bot) == [(ADA, "create"), (ADA, "edit")]

    plan_lookup(openai_double)
    ts = await bot.say(CHANNEL, ADA, QUESTION)
    assert bot_texts(slack_double, CHANNEL, ts) == [ANSWER]
    assert mcp_tools_sent(openai_double) == ["crm"]

    # Unchecking the last one: the next answer has no MCP tool, and show says nothing of MCP.
    await command(bot, slack_double, "edit")
    await submit_form(bot, form_of(slack_double), name="Sales helper", mcp_servers=())
    await command(bot, slack_double, "show")
    assert "MCP" not in last_ephemeral(slack_double, user=ADA)
    await bot.say(CHANNEL, ADA, f"<@{BOT}> anything else?", thread_ts=ts)
    assert mcp_tools_sent(openai_double) == []


@RESPONSES_ONLY
async def test_enabling_a_server_by_command_is_recorded_like_an_edit_and_the_form_shows_it_checked(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await bot_with_crm(start_bot, slack_double, mcp_server)
    assert await assistant_changes(bot) == [(ADA, "edit")]
    await command(bot, slack_double, "edit")
    field = mcp_field(form_of(slack_double))
    assert field is not None and [option["value"] for option in field["element"]["initial_options"]] == ["crm"]
    await command(bot, slack_double, "mcp disable crm")
    assert await assistant_changes(bot) == [(ADA, "edit"), (ADA, "edit")]
    await command(bot, slack_double, "show")
    assert "MCP" not in last_ephemeral(slack_double, user=ADA)


@RESPONSES_ONLY
async def test_a_stale_form_naming_a_server_removed_meanwhile_is_refused_next_to_the_field(
    start_bot, openai_double, slack_double, mcp_server
) -> None:
    bot = await start_bot(**mcp_settings())
    await command(bot, slack_double, f"mcp add crm {mcp_server.url}")
    await command(bot, slack_double, "edit")
    form = form_of(slack_double)
    await command(bot, slack_double, "mcp remove crm")
    assert await submit_form(bot, form, name="Helper", mcp_servers=("crm",)) == {
        "response_action": "errors",
        "errors": {"mcp_servers": "Choose only the servers listed."},
    }
    assert await assistant_changes(bot) == []


@pytest.mark.backends("assistants", "chat", reason="the form's refusal is for the backends without MCP tools")
async def test_backends_without_mcp_offer_no_servers_in_the_form_and_refuse_them_naming_the_backend(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(**mcp_settings())
    await command(bot, slack_double, "create")
    form = form_of(slack_double)
    assert mcp_field(form) is None
    assert await submit_form(bot, form, name="Helper", mcp_servers=("crm",)) == {
        "response_action": "errors",
        "errors": {"mcp_servers": f"MCP servers are not available on the {backend} backend."},
    }
    assert await assistant_changes(bot) == []
