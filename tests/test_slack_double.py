"""Self-tests of the Slack double and the event delivery helpers, driven through slack_sdk and slack_bolt."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from aiohttp import web
from doubles.slack import SlackDouble
from doubles.slack.methods import METHODS, web_api
from doubles.slack.references import (
    EVENT_WRAPPER_SCHEMA,
    event_sample_path,
    require_specs,
    response_shape,
    sample_shape,
    shape_violations,
    web_api_swagger,
)
from doubles.slack_events import (
    block_action_body,
    deliver,
    deliver_form,
    sign,
    slash_command_body,
    view_submission_body,
)
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.payload_utils import (
    is_assistant_thread_started_event,
    is_user_message_event_in_assistant_thread,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from support.waiting import eventually

require_specs()

TOKEN = "xoxb-test-token"
OTHER_TOKEN = "xoxb-other-team-token"
SECRET = "signing-secret-for-tests"
BOT = "U0BOT"
GENERAL = "C0GENERAL"
SECRET_CHANNEL = "G0SECRET"
ADA_DM = "D0ADA"
GROUP_DM = "G0TRIO"


@pytest.fixture
def slack() -> Iterator[SlackDouble]:
    double = SlackDouble().start()
    double.add_user(
        "U0ADA", name="ada", display_name="Ada", real_name="Ada Lovelace", tz="Europe/London", is_admin=True
    )
    double.add_user("U0BOB", name="bob")
    double.add_channel(GENERAL, name="general")
    double.add_channel(SECRET_CHANNEL, name="secret", is_private=True, members=[BOT, "U0ADA"])
    double.add_channel(ADA_DM, is_im=True, user="U0ADA")
    double.add_channel(GROUP_DM, name="mpdm-ada--bob--bot", is_mpim=True, members=[BOT, "U0ADA", "U0BOB"])
    yield double
    try:
        assert double.violations == []
    finally:
        double.stop()


@pytest.fixture
def client(slack: SlackDouble) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.api_url)


async def slack_error(call: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value.response["error"]


def assert_like_samples(envelope: dict[str, Any]) -> None:
    """The envelope has the key structure of its sample and satisfies the Events API wrapper schema."""
    shape = sample_shape(event_sample_path(envelope["event"]))
    assert shape is not None, event_sample_path(envelope["event"])
    assert shape_violations(envelope, shape) == []
    jsonschema.validate(envelope, json.loads(EVENT_WRAPPER_SCHEMA.read_text()))


# Web API ---------------------------------------------------------------------------------------


async def test_posting_updating_and_deleting_show_what_a_person_would_see(slack, client) -> None:
    posted = await client.chat_postMessage(
        channel=GENERAL, text="draft", mrkdwn=False, metadata={"event_type": "answer", "event_payload": {"n": 1}}
    )
    updated = await client.chat_update(channel=GENERAL, ts=posted["ts"], text="final")
    doomed = await client.chat_postMessage(
        channel=GENERAL, text="oops", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "oops"}}]
    )
    await client.chat_delete(channel=GENERAL, ts=doomed["ts"])

    assert updated["text"] == "final"
    assert [m["text"] for m in slack.messages(GENERAL)] == ["final"]
    assert slack.bot_messages(GENERAL)[0]["metadata"] == {"event_type": "answer", "event_payload": {"n": 1}}
    assert slack.update_history(GENERAL, posted["ts"]) == ["draft", "final"]
    assert slack.calls_to("chat.postMessage")[0].params["mrkdwn"] is False
    assert slack.calls_to("chat.postMessage")[0].token == TOKEN


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_missing_or_wrong_arguments_get_slacks_errors_and_are_recorded(slack, client) -> None:
    assert await slack_error(client.chat_postMessage(channel=GENERAL, text="")) == "no_text"
    assert await slack_error(client.chat_postMessage(channel="C0NOWHERE", text="hi")) == "channel_not_found"
    assert await slack_error(client.chat_update(channel=GENERAL, ts="1.000001", text="x")) == "message_not_found"
    assert await slack_error(client.api_call("chat.teleport")) == "unknown_method"
    assert await slack_error(client.chat_postMessage(channel=GENERAL, text="x" * 40_001)) == "msg_too_long"
    assert slack.calls_to("chat.postMessage")[0].params == {"channel": GENERAL, "text": ""}
    assert slack.calls_to("chat.postMessage")[0].response == {"ok": False, "error": "no_text"}
    assert slack.messages(GENERAL) == []


async def test_membership_rules_follow_slack(slack, client) -> None:
    slack.add_channel("C0QUIET", name="quiet", members=["U0ADA"])
    slack.add_channel("G0HIDDEN", name="hidden", is_private=True, members=["U0ADA"])
    assert await slack_error(client.chat_postMessage(channel="C0QUIET", text="hi")) == "not_in_channel"
    assert await slack_error(client.conversations_info(channel="G0HIDDEN")) == "channel_not_found"
    assert (await client.conversations_info(channel="C0QUIET"))["channel"]["is_member"] is False
    assert slack.human_posts("C0QUIET", "U0ADA", f"<@{BOT}> anyone?").envelopes == []  # not a member: no events
    assert (
        await slack_error(client.chat_postEphemeral(channel=GENERAL, user="U0BOB", text="psst"))
        == "user_not_in_channel"
    )


async def test_replies_are_paginated_with_cursors(slack, client) -> None:
    root = slack.human_posts(GENERAL, "U0ADA", "question").ts
    replies = [
        (await client.chat_postMessage(channel=GENERAL, thread_ts=root, text=f"part {n}"))["ts"] for n in range(5)
    ]

    seen, cursor, pages = [], None, 0
    while True:
        page = await client.conversations_replies(channel=GENERAL, ts=root, limit=2, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert seen == [root, *replies] and pages == 3
    parent = slack.messages(GENERAL)[0]
    assert (parent["reply_count"], parent["reply_users"], parent["latest_reply"]) == (5, [BOT], replies[-1])
    assert [m["ts"] for m in slack.messages(GENERAL, thread_ts=root)] == [root, *replies]
    assert (
        await slack_error(client.conversations_replies(channel=GENERAL, ts=root, cursor="bm9wZQ==")) == "invalid_cursor"
    )


async def test_history_is_newest_first_top_level_only_and_shows_broadcasts(slack, client) -> None:
    first = slack.human_posts(GENERAL, "U0ADA", "one").ts
    await client.chat_postMessage(channel=GENERAL, thread_ts=first, text="quiet reply")
    await client.chat_postMessage(channel=GENERAL, thread_ts=first, text="loud reply", reply_broadcast=True)
    last = slack.human_posts(GENERAL, "U0BOB", "two").ts
    history = await client.conversations_history(channel=GENERAL)
    assert [m["text"] for m in history["messages"]] == ["two", "loud reply", "one"]
    older = await client.conversations_history(channel=GENERAL, latest=last, limit=10)
    assert [m["text"] for m in older["messages"]] == ["loud reply", "one"]


async def test_conversation_and_user_info(slack, client) -> None:
    public = (await client.conversations_info(channel=GENERAL))["channel"]
    private = (await client.conversations_info(channel=SECRET_CHANNEL))["channel"]
    im = (await client.conversations_info(channel=ADA_DM))["channel"]
    assert (public["is_channel"], public["is_private"], public["name"]) == (True, False, "general")
    assert (private["is_group"], private["is_private"]) == (True, True)
    assert (im["is_im"], im["user"]) == (True, "U0ADA")

    ada = (await client.users_info(user="U0ADA"))["user"]
    assert ada["profile"]["display_name"] == "Ada" and ada["profile"]["real_name"] == "Ada Lovelace"
    assert ada["tz"] == "Europe/London" and ada["tz_offset"] in (0, 3600)
    assert (ada["is_admin"], ada["is_owner"], ada["is_bot"]) == (True, False, False)
    assert (await client.users_info(user=BOT))["user"]["is_bot"] is True
    assert await slack_error(client.users_info(user="U0NOBODY")) == "user_not_found"
    me = await client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == (BOT, "B0BOT", "T0TEAM")


async def test_wrong_or_missing_token_is_invalid_auth(slack) -> None:
    for token in ("xoxb-wrong", None):
        wrong = AsyncWebClient(token=token, base_url=slack.api_url)
        assert await slack_error(wrong.chat_postMessage(channel=GENERAL, text="hi")) == "invalid_auth"
    assert slack.messages(GENERAL) == []


async def test_form_encoded_requests_and_token_in_the_body_work_like_json(slack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{slack.api_url}chat.postMessage",
            data={"token": TOKEN, "channel": GENERAL, "text": "via form", "blocks": json.dumps([{"type": "divider"}])},
        )
    assert response.json()["ok"] is True
    assert slack.messages(GENERAL)[0]["blocks"] == [{"type": "divider"}]


async def test_rate_limit_with_retry_after_is_honoured_by_slack_sdk(slack) -> None:
    slack.fail_next("chat.postMessage", status=429, headers={"Retry-After": "1"})
    patient = AsyncWebClient(
        token=TOKEN, base_url=slack.api_url, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)]
    )
    started = time.monotonic()
    await patient.chat_postMessage(channel=GENERAL, text="eventually")
    assert time.monotonic() - started >= 1.0
    calls = slack.calls_to("chat.postMessage")
    assert [c.response["ok"] for c in calls] == [False, True]
    assert calls[0].response["error"] == "ratelimited"
    assert [m["text"] for m in slack.messages(GENERAL)] == ["eventually"]


async def test_injected_errors_repeat_then_stop(slack, client) -> None:
    posted = await client.chat_postMessage(channel=GENERAL, text="hi")
    slack.fail_next("chat.update", error="message_not_found", times=2)
    for _ in range(2):
        assert await slack_error(client.chat_update(channel=GENERAL, ts=posted["ts"], text="x")) == "message_not_found"
    await client.chat_update(channel=GENERAL, ts=posted["ts"], text="x")
    slack.fail_next("chat.postMessage", error="not_in_channel")
    assert await slack_error(client.chat_postMessage(channel=GENERAL, text="y")) == "not_in_channel"


async def test_ephemeral_reactions_permalinks(slack, client) -> None:
    ts = slack.human_posts(GENERAL, "U0ADA", "hello").ts
    await client.chat_postEphemeral(channel=GENERAL, user="U0ADA", text="only you", thread_ts=ts)
    await client.reactions_add(channel=GENERAL, timestamp=ts, name="eyes")
    assert await slack_error(client.reactions_add(channel=GENERAL, timestamp=ts, name="eyes")) == "already_reacted"
    link = await client.chat_getPermalink(channel=GENERAL, message_ts=ts)

    assert [e["text"] for e in slack.ephemeral(GENERAL, "U0ADA")] == ["only you"]
    assert slack.ephemeral(GENERAL, "U0BOB") == [] and [m["text"] for m in slack.messages(GENERAL)] == ["hello"]
    assert slack.messages(GENERAL)[0]["reactions"] == [{"name": "eyes", "users": [BOT], "count": 1}]
    assert link["permalink"].endswith(f"/archives/{GENERAL}/p{ts.replace('.', '')}")
    await client.reactions_remove(channel=GENERAL, timestamp=ts, name="eyes")
    assert "reactions" not in slack.messages(GENERAL)[0]
    assert await slack_error(client.reactions_remove(channel=GENERAL, timestamp=ts, name="eyes")) == "no_reaction"


async def test_views_are_opened_updated_and_published(slack, client) -> None:
    modal = {
        "type": "modal",
        "callback_id": "feedback",
        "title": {"type": "plain_text", "text": "Feedback"},
        "blocks": [],
    }
    opened = (await client.views_open(trigger_id="123.456.abc", view=modal))["view"]
    updated = await client.views_update(
        view_id=opened["id"], hash=opened["hash"], view=modal | {"private_metadata": "x"}
    )
    assert (
        await slack_error(client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal)) == "hash_conflict"
    )
    await client.views_publish(user_id="U0ADA", view={"type": "home", "blocks": []})
    assert updated["view"]["id"] == opened["id"]
    assert [v["private_metadata"] for v in slack.views() if v["type"] == "modal"] == ["x"]
    assert slack.home_view("U0ADA")["type"] == "home"


async def test_assistant_thread_methods_are_recorded_and_status_clears_on_reply(slack, client) -> None:
    envelope = slack.assistant_thread_started(ADA_DM, "U0ADA", context_channel_id=GENERAL)
    thread_ts = envelope["event"]["assistant_thread"]["thread_ts"]
    await client.assistant_threads_setSuggestedPrompts(
        channel_id=ADA_DM, thread_ts=thread_ts, prompts=[{"title": "Hi", "message": "Say hi"}]
    )
    await client.assistant_threads_setTitle(channel_id=ADA_DM, thread_ts=thread_ts, title="Greetings")
    await client.assistant_threads_setStatus(channel_id=ADA_DM, thread_ts=thread_ts, status="is thinking…")
    assert slack.current_status(ADA_DM, thread_ts) == "is thinking…"
    await client.chat_postMessage(channel=ADA_DM, thread_ts=thread_ts, text="hi!")

    assert slack.current_status(ADA_DM, thread_ts) == ""
    assert slack.status_updates[-1]["status"] == "is thinking…" and slack.status_updates[-1]["team_id"] == "T0TEAM"
    assert slack.suggested_prompts[-1]["prompts"] == [{"title": "Hi", "message": "Say hi"}]
    assert slack.title_updates[-1]["title"] == "Greetings"
    root = slack.messages(ADA_DM, thread_ts=thread_ts)[0]
    assert root["subtype"] == "assistant_app_thread" and root["assistant_app_thread"]["title"] == "Greetings"
    replies = await client.conversations_replies(channel=ADA_DM, ts=thread_ts)
    assert [m["text"] for m in replies["messages"]] == ["New chat", "hi!"]


async def test_streamed_message_grows_and_then_stops(slack, client) -> None:
    root = slack.human_posts(GENERAL, "U0ADA", "tell me a story").ts
    stream = await client.chat_stream(
        channel=GENERAL, thread_ts=root, buffer_size=1, recipient_user_id="U0ADA", recipient_team_id="T0TEAM"
    )
    for piece in ("Once ", "upon ", "a time."):
        await stream.append(markdown_text=piece)
    await stream.stop(markdown_text=" The end.")

    (reply,) = slack.bot_messages(GENERAL, root)
    assert reply["text"] == "Once upon a time. The end."
    assert slack.update_history(GENERAL, reply["ts"]) == [
        "Once ",
        "Once upon ",
        "Once upon a time.",
        "Once upon a time. The end.",
    ]
    error = await slack_error(client.chat_appendStream(channel=GENERAL, ts=reply["ts"], markdown_text="more"))
    assert error == "message_not_in_streaming_state"


async def test_the_double_wants_the_recipient_of_a_stream_outside_a_dm(slack, client) -> None:
    root = slack.human_posts(GENERAL, "U0ADA", "hi").ts
    assert await slack_error(client.chat_startStream(channel=GENERAL, thread_ts=root)) == "missing_recipient_user_id"
    missing_team = client.chat_startStream(channel=GENERAL, thread_ts=root, recipient_user_id="U0ADA")
    assert await slack_error(missing_team) == "missing_recipient_team_id"
    dm_root = slack.human_posts(ADA_DM, "U0ADA", "hi").ts
    assert (await client.chat_startStream(channel=ADA_DM, thread_ts=dm_root, markdown_text="ok"))["ts"]


async def test_the_double_limits_markdown_per_call_and_ends_idle_streams(slack, client) -> None:
    root = slack.human_posts(ADA_DM, "U0ADA", "hi").ts
    started = await client.chat_startStream(channel=ADA_DM, thread_ts=root, markdown_text="a" * 12_000)
    too_long = client.chat_appendStream(channel=ADA_DM, ts=started["ts"], markdown_text="b" * 12_001)
    assert await slack_error(too_long) == "msg_too_long"
    slack.stream_idle_seconds = 0.0
    idle = client.chat_appendStream(channel=ADA_DM, ts=started["ts"], markdown_text="late")
    assert await slack_error(idle) == "message_not_in_streaming_state"


async def test_the_double_refuses_streaming_and_agent_sessions_when_told(slack, client) -> None:
    root = slack.human_posts(ADA_DM, "U0ADA", "hi").ts
    slack.refuse_streaming("not_allowed")
    assert await slack_error(client.chat_startStream(channel=ADA_DM, thread_ts=root)) == "not_allowed"
    refused = client.agents_sessions_setStatus(channel_id=ADA_DM, thread_ts=root, status="processing")
    assert await slack_error(refused) == "feature_disabled"
    slack.declare_agent()
    await client.agents_sessions_setStatus(channel_id=ADA_DM, thread_ts=root, status="processing")
    assert slack.agent_session_statuses(ADA_DM, root) == ["processing"]


async def test_the_double_keeps_streamed_tasks_and_blocks_and_adds_stop_blocks_at_the_bottom(slack, client) -> None:
    root = slack.human_posts(ADA_DM, "U0ADA", "hi").ts
    button = {
        "type": "actions",
        "elements": [{"type": "button", "action_id": "x", "text": {"type": "plain_text", "text": "X"}}],
    }
    task = {"type": "task_update", "id": "t1", "title": "Running code", "status": "in_progress"}
    started = await client.chat_startStream(
        channel=ADA_DM, thread_ts=root, chunks=[{"type": "blocks", "blocks": [button]}]
    )
    await client.chat_appendStream(
        channel=ADA_DM, ts=started["ts"], chunks=[task, {"type": "markdown_text", "text": "Hi"}]
    )
    bad_task = client.chat_appendStream(channel=ADA_DM, ts=started["ts"], chunks=[{**task, "status": "done"}])
    assert await slack_error(bad_task) == "invalid_chunks"
    footer = {"type": "context", "elements": [{"type": "mrkdwn", "text": "end"}]}
    await client.chat_stopStream(channel=ADA_DM, ts=started["ts"], blocks=[footer])

    (message,) = slack.bot_messages(ADA_DM, root)
    assert message["text"] == "Hi" and [b["type"] for b in message["blocks"]] == ["actions", "context"]
    assert [c["type"] for c in slack.streamed_chunks(ADA_DM, message["ts"])] == [
        "blocks",
        "task_update",
        "markdown_text",
    ]
    await client.assistant_threads_setStatus(
        channel_id=ADA_DM, thread_ts=root, status="is thinking…", loading_messages=["Reading…", "Writing…"]
    )
    assert slack.status_updates[-1]["loading_messages"] == ["Reading…", "Writing…"]
    too_many = client.assistant_threads_setStatus(
        channel_id=ADA_DM, thread_ts=root, status="is thinking…", loading_messages=["line"] * 11
    )
    assert await slack_error(too_many) == "invalid_arguments"


# Files -----------------------------------------------------------------------------------------


async def test_file_download_needs_the_bot_token_of_its_workspace(slack) -> None:
    slack.add_workspace("T0OTHER", OTHER_TOKEN, "U0BOT2", "B0BOT2")
    shared = slack.add_file("notes.txt", b"secret notes", user="U0ADA")
    post = slack.human_posts(GENERAL, "U0ADA", "see attached", files=[shared])
    file = post.envelopes[0]["event"]["files"][0]
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(file["url_private"])
        other_team = await http.get(file["url_private"], headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
        authorised = await http.get(file["url_private_download"], headers={"Authorization": f"Bearer {TOKEN}"})
    for refused in (anonymous, other_team):
        assert refused.status_code == 200 and refused.headers["content-type"].startswith("text/html")
        assert b"secret notes" not in refused.content
    assert authorised.content == b"secret notes" and authorised.headers["content-type"].startswith("text/plain")


async def test_files_upload_v2_runs_the_external_upload_flow(slack, client) -> None:
    root = slack.human_posts(GENERAL, "U0ADA", "export please").ts
    result = await client.files_upload_v2(
        channel=GENERAL,
        thread_ts=root,
        content=b"a,b\n1,2\n",
        filename="export.csv",
        title="Export",
        initial_comment="Here you go",
    )
    assert [c.method for c in slack.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    assert result["file"]["title"] == "Export" and result["file"]["size"] == 8
    (message,) = slack.bot_messages(GENERAL, root)
    assert message["text"] == "Here you go" and message["files"][0]["id"] == result["file"]["id"]
    info = await client.files_info(file=result["file"]["id"])
    async with httpx.AsyncClient() as http:
        download = await http.get(info["file"]["url_private_download"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert download.content == b"a,b\n1,2\n"
    assert GENERAL in info["file"]["channels"]


async def test_completing_an_upload_that_never_arrived_fails(slack, client) -> None:
    ticket = await client.files_getUploadURLExternal(filename="empty.txt", length=3)
    error = await slack_error(
        client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id=GENERAL)
    )
    assert error == "file_not_found"


# Workspaces -------------------------------------------------------------------------------------


async def test_two_workspaces_never_see_each_other(slack, client) -> None:
    slack.add_workspace("T0OTHER", OTHER_TOKEN, "U0BOT2", "B0BOT2")
    slack.add_channel(GENERAL, name="general", team_id="T0OTHER")
    slack.add_channel("C0ONLYTHERE", name="theirs", team_id="T0OTHER")
    slack.add_user("U0ZED", name="zed", team_id="T0OTHER")
    other = AsyncWebClient(token=OTHER_TOKEN, base_url=slack.api_url)

    await client.chat_postMessage(channel=GENERAL, text="ours")
    await other.chat_postMessage(channel=GENERAL, text="theirs")
    assert [m["text"] for m in slack.messages(GENERAL)] == ["ours"]
    assert [m["text"] for m in slack.messages(GENERAL, team_id="T0OTHER")] == ["theirs"]
    assert slack.bot_messages(GENERAL, team_id="T0OTHER")[0]["bot_id"] == "B0BOT2"
    assert await slack_error(client.conversations_info(channel="C0ONLYTHERE")) == "channel_not_found"
    assert await slack_error(client.users_info(user="U0ZED")) == "user_not_found"
    assert (await other.auth_test())["team_id"] == "T0OTHER"
    envelope = slack.human_posts(GENERAL, "U0ZED", "<@U0BOT2> hi", team_id="T0OTHER").envelopes[0]
    assert envelope["team_id"] == "T0OTHER" and envelope["authorizations"][0]["user_id"] == "U0BOT2"


# Events ------------------------------------------------------------------------------------------


def test_a_mention_in_a_channel_is_an_app_mention_and_a_message(slack) -> None:
    post = slack.human_posts(GENERAL, "U0ADA", f"<@{BOT}> what's up?")
    assert [(e["event"]["type"], e["event"].get("channel_type")) for e in post.envelopes] == [
        ("app_mention", None),
        ("message", "channel"),
    ]
    for envelope in post.envelopes:
        assert_like_samples(envelope)
        assert envelope["event"]["ts"] == post.ts and envelope["type"] == "event_callback"
        assert envelope["authorizations"][0] == {
            "team_id": "T0TEAM",
            "user_id": BOT,
            "is_bot": True,
            "is_enterprise_install": False,
        }
    assert len({e["event_id"] for e in post.envelopes}) == 2
    assert all(e["event_id"].startswith("Ev") for e in post.envelopes)


def test_channel_types_and_plain_messages_give_one_envelope(slack) -> None:
    expected = {GENERAL: "channel", SECRET_CHANNEL: "group", ADA_DM: "im", GROUP_DM: "mpim"}
    for channel, channel_type in expected.items():
        (envelope,) = slack.human_posts(channel, "U0ADA", "no mention here").envelopes
        assert envelope["event"]["channel_type"] == channel_type
        assert_like_samples(envelope)
    (dm,) = slack.human_posts(ADA_DM, "U0ADA", f"<@{BOT}> a mention in a DM is just a message").envelopes
    assert dm["event"]["type"] == "message"


def test_timestamps_increase_and_thread_replies_name_their_parent(slack) -> None:
    root = slack.human_posts(GENERAL, "U0ADA", "root").ts
    reply = slack.human_posts(GENERAL, "U0BOB", f"<@{BOT}> reply", thread_ts=root)
    assert float(reply.ts) > float(root)
    for envelope in reply.envelopes:
        assert_like_samples(envelope)
        assert envelope["event"]["thread_ts"] == root
    assert reply.envelopes[1]["event"]["parent_user_id"] == "U0ADA"


def test_file_shares_edits_deletes_and_joins(slack) -> None:
    shared = slack.add_file("chart.png", b"\x89PNG", user="U0ADA", mimetype="image/png")
    upload = slack.human_posts(GENERAL, "U0ADA", f"<@{BOT}> look", files=[shared])
    assert [e["event"].get("subtype") for e in upload.envelopes] == [None, "file_share"]
    edit = slack.human_edits(GENERAL, upload.ts, "look again")
    delete = slack.human_deletes(GENERAL, upload.ts)
    join = slack.channel_join(GENERAL, "U0BOB", inviter="U0ADA")
    for envelope in [*upload.envelopes, *edit.envelopes, *delete.envelopes, *join.envelopes]:
        assert_like_samples(envelope)
    changed = edit.envelopes[0]["event"]
    assert (changed["subtype"], changed["message"]["text"], changed["previous_message"]["text"]) == (
        "message_changed",
        "look again",
        f"<@{BOT}> look",
    )
    assert delete.envelopes[0]["event"]["deleted_ts"] == upload.ts
    assert join.envelopes[0]["event"]["subtype"] == "channel_join"
    assert [m.get("subtype") for m in slack.messages(GENERAL)] == ["channel_join"]


def test_assistant_pane_events_have_slacks_shape(slack) -> None:
    started = slack.assistant_thread_started(ADA_DM, "U0ADA", context_channel_id=GENERAL)
    thread = started["event"]["assistant_thread"]
    assert set(started["event"]) == {"type", "assistant_thread", "event_ts"}
    assert set(thread) == {"user_id", "context", "channel_id", "thread_ts"}
    assert (thread["user_id"], thread["channel_id"], thread["context"]["channel_id"]) == ("U0ADA", ADA_DM, GENERAL)
    assert is_assistant_thread_started_event(started)
    jsonschema.validate(started, json.loads(EVENT_WRAPPER_SCHEMA.read_text()))

    (message,) = slack.human_posts(ADA_DM, "U0ADA", "summarise my week", thread_ts=thread["thread_ts"]).envelopes
    assert_like_samples(message)
    assert is_user_message_event_in_assistant_thread(message)
    assert (message["event"]["parent_user_id"], message["event"]["channel_type"]) == (BOT, "im")
    assert "action_token" in message["event"]["assistant_thread"]
    changed = slack.assistant_thread_context_changed(ADA_DM, "U0ADA", thread["thread_ts"], SECRET_CHANNEL)
    assert changed["event"]["assistant_thread"]["context"]["channel_id"] == SECRET_CHANNEL


# Shapes and specs ---------------------------------------------------------------------------------


def test_the_validator_reports_unknown_keys_and_wrong_types() -> None:
    shape = response_shape("chat.postMessage")
    problems = shape_violations({"ok": "yes", "ts": "1.2", "message": {"text": 5, "sparkle": True}}, shape)
    assert problems == [
        "$.ok: string, the reference has boolean",
        "$.message.text: integer, the reference has string",
        "$.message.sparkle: not in the reference",
    ]
    assert (
        shape_violations({"ok": True, "channel": "C1", "permalink": "https://x"}, response_shape("chat.getPermalink"))
        == []
    )
    assert shape_violations({"ok": True, "extra": 1}, response_shape("chat.getPermalink")) == [
        "$.extra: not in the reference"
    ]


def test_required_arguments_cover_the_swagger_spec() -> None:
    swagger = web_api_swagger()["paths"]
    for name, method in METHODS.items():
        operations = swagger.get(f"/{name}", {})
        parameters = [p for op in operations.values() for p in op.get("parameters", [])]
        declared = {p["name"] for p in parameters if p.get("required") and p["name"] != "token"}
        enforced = {n for requirement in method.requires for n in requirement.names}
        assert declared <= enforced, name


def test_a_web_api_method_is_registered_by_one_module_only() -> None:
    with pytest.raises(ValueError, match="chat.postMessage"):
        web_api("chat.postMessage")(lambda slack, ws, params: {})
    assert METHODS["chat.postMessage"].handler.__module__ == "doubles.slack.chat"


def test_reset_forgets_everything_but_the_first_workspace(slack) -> None:
    slack.add_workspace("T0OTHER", OTHER_TOKEN, "U0BOT2", "B0BOT2")
    slack.human_posts(GENERAL, "U0ADA", "hi")
    slack.reset()
    with pytest.raises(ValueError):
        slack.messages(GENERAL)
    slack.add_channel(GENERAL, name="general")
    assert slack.messages(GENERAL) == [] and slack.calls == []
    with pytest.raises(ValueError):
        slack.messages(GENERAL, team_id="T0OTHER")


# Signing and delivery ------------------------------------------------------------------------------


def test_signatures_verify_with_the_verifier_slack_bolt_uses() -> None:
    body = json.dumps({"type": "event_callback"}).encode()
    headers = sign(body, SECRET)
    verifier = SignatureVerifier(signing_secret=SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier(signing_secret="another").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body, sign(body, SECRET, timestamp=int(time.time()) - 600))


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """A plain HTTP endpoint that keeps the requests it gets, to see exactly what deliver() sends."""
    requests: list[web.Request] = []
    bodies: list[bytes] = []

    async def keep(request: web.Request) -> web.Response:
        requests.append(request)
        bodies.append(await request.read())
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", keep)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", requests, bodies
    await runner.cleanup()


async def test_deliver_sends_what_slack_sends(slack, recorder) -> None:
    url, requests, bodies = recorder
    envelope = slack.human_posts(GENERAL, "U0ADA", "hello").envelopes[0]
    await deliver(url, envelope, SECRET, retry_num=2, retry_reason="http_error")
    await deliver(url, envelope, SECRET, bad_signature=True)
    retried, forged = requests
    assert json.loads(bodies[0]) == envelope
    assert retried.headers["Content-Type"] == "application/json"
    assert (retried.headers["X-Slack-Retry-Num"], retried.headers["X-Slack-Retry-Reason"]) == ("2", "http_error")
    verifier = SignatureVerifier(signing_secret=SECRET)
    assert verifier.is_valid_request(bodies[0], dict(retried.headers))
    assert not verifier.is_valid_request(bodies[1], dict(forged.headers))
    assert "X-Slack-Retry-Num" not in forged.headers


def test_interactivity_payloads_follow_the_samples(slack) -> None:
    slack.human_posts(GENERAL, "U0ADA", "approve this?")
    message = slack.messages(GENERAL)
    action = block_action_body(
        action_id="approve",
        value="yes",
        team_id="T0TEAM",
        channel_id=GENERAL,
        user_id="U0ADA",
        message=message[0],
        response_url="https://hooks.example/1",
        trigger_id="1.2.3",
    )
    submission = view_submission_body(
        {"id": "V1", "type": "modal", "callback_id": "feedback", "private_metadata": ""},
        {"b": {"a": {"type": "plain_text_input", "value": "great"}}},
        team_id="T0TEAM",
        user_id="U0ADA",
        trigger_id="1.2.3",
    )
    for body, sample in (
        (action, "app-backend/interactive-components/BlockActionPayload.json"),
        (submission, "app-backend/views/ViewSubmissionPayload.json"),
    ):
        payload = json.loads(httpx.QueryParams(body.decode())["payload"])
        assert shape_violations(payload, sample_shape(sample)) == []
    command = dict(
        httpx.QueryParams(
            slash_command_body(
                "/ask", "hi", team_id="T0TEAM", channel_id=GENERAL, user_id="U0ADA", response_url="u", trigger_id="t"
            ).decode()
        )
    )
    assert shape_violations(command, sample_shape("app-backend/slash-commands/SlashCommandPayload.json")) == [
        "$.is_enterprise_install: string, the reference has boolean"  # form fields are strings on the wire
    ]


async def test_a_bolt_app_accepts_the_deliveries_and_answers_through_the_double(slack) -> None:
    app = AsyncApp(client=AsyncWebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET)
    handled: list[str] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text=f"hi <@{event['user']}>", thread_ts=event["ts"])

    @app.event("message")
    async def on_message() -> None:
        handled.append("message")

    @app.command("/ask")
    async def on_ask(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        await respond(text=f"asked: {command['text']}", response_type="in_channel")

    @app.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        handled.append(body["actions"][0]["value"])

    @app.view("feedback")
    async def on_feedback(ack: Any, view: dict[str, Any]) -> None:
        await ack()
        handled.append(view["state"]["values"]["b"]["a"]["value"])

    runner = web.AppRunner(app.web_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        post = slack.human_posts(GENERAL, "U0ADA", f"<@{BOT}> hello")
        for envelope in post.envelopes:
            assert (await deliver(url, envelope, SECRET)).status_code == 200
        assert (await deliver(url, post.envelopes[0], SECRET, bad_signature=True)).status_code == 401
        assert (await deliver(url, post.envelopes[0], SECRET, timestamp=int(time.time()) - 600)).status_code == 401
        reply = await eventually(lambda: slack.bot_messages(GENERAL, post.ts))
        assert reply[0]["text"] == "hi <@U0ADA>"

        response_url = slack.new_response_url(channel=GENERAL, user="U0ADA")
        command = slash_command_body(
            "/ask",
            "why?",
            team_id="T0TEAM",
            channel_id=GENERAL,
            user_id="U0ADA",
            response_url=response_url,
            trigger_id="1.2.3",
        )
        assert (await deliver_form(url, command, SECRET)).status_code == 200
        await eventually(lambda: slack.response_url_posts)
        assert slack.response_url_posts[0].body["text"] == "asked: why?"
        assert "asked: why?" in [m["text"] for m in await eventually(lambda: slack.bot_messages(GENERAL))]

        action = block_action_body(
            action_id="approve",
            value="yes",
            team_id="T0TEAM",
            channel_id=GENERAL,
            user_id="U0ADA",
            message=reply[0],
            response_url=slack.new_response_url(),
            trigger_id="1.2.3",
        )
        assert (await deliver_form(url, action, SECRET)).status_code == 200
        modal = (
            await app.client.views_open(
                trigger_id="1.2.3",
                view={
                    "type": "modal",
                    "callback_id": "feedback",
                    "title": {"type": "plain_text", "text": "Feedback"},
                    "blocks": [],
                },
            )
        )["view"]
        submission = view_submission_body(
            modal,
            {"b": {"a": {"type": "plain_text_input", "value": "great"}}},
            team_id="T0TEAM",
            user_id="U0ADA",
            trigger_id="1.2.4",
        )
        assert (await deliver_form(url, submission, SECRET)).status_code == 200
        await eventually(lambda: {"message", "yes", "great"} <= set(handled))
    finally:
        await runner.cleanup()
