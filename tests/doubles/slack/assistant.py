"""Assistant threads and agent sessions: the pane a person opens in their IM with the app, its events, status,
prompts and title, and the session status of an app declared an agent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .methods import NEED_CHANNEL_ID, NEED_THREAD_TS, Params, SlackError, need, web_api
from .workspace import Workspace, next_ts

if TYPE_CHECKING:
    from .server import SlackDouble


def thread_started_event(ws: Workspace, channel: str, user: str, context_channel_id: str | None) -> dict[str, Any]:
    """Slack creates the thread root in the user's IM with the app and sends assistant_thread_started."""
    conversation = ws.known_channel(channel)
    if not (conversation.is_im and conversation.user == user):
        raise ValueError(f"{channel} is not the IM between the bot and {user}")
    root = ws.store(
        channel,
        {
            "type": "message",
            "subtype": "assistant_app_thread",
            "user": ws.bot_user_id,
            "text": "New chat",
            "ts": next_ts(),
            "team": ws.team_id,
            "assistant_app_thread": {"title": "", "title_blocks": [], "first_user_thread_reply": ""},
        },
    )
    return thread_event(ws, "assistant_thread_started", channel, user, root.ts, context_channel_id)


def thread_event(
    ws: Workspace, event_type: str, channel: str, user: str, thread_ts: str, context_channel_id: str | None
) -> dict[str, Any]:
    """An assistant_thread_* event: whose thread it is, and the channel they were looking at, if any."""
    context = (
        {"channel_id": context_channel_id, "team_id": ws.team_id, "enterprise_id": None} if context_channel_id else {}
    )
    return {
        "type": event_type,
        "assistant_thread": {"user_id": user, "context": context, "channel_id": channel, "thread_ts": thread_ts},
        "event_ts": next_ts(),
    }


# docs.slack.dev/reference/methods/assistant.threads.setStatus: up to 10 loading messages.
MAX_LOADING_MESSAGES = 10
AGENT_SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})


@web_api("assistant.threads.setStatus", NEED_CHANNEL_ID, NEED_THREAD_TS, need("status", allow_empty=True))
def assistant_threads_set_status(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel_id"))
    if params.present("loading_messages"):
        lines = params.json("loading_messages")
        if (
            not isinstance(lines, list)
            or len(lines) > MAX_LOADING_MESSAGES
            or not all(isinstance(x, str) for x in lines)
        ):
            raise SlackError("invalid_arguments")
    thread_ts = params.text("thread_ts") or ""
    ws.statuses[(conversation.id, thread_ts)] = params.text("status") or ""
    slack.recording.status_updates.append({"team_id": ws.team_id, **params.decoded()})
    return {}


@web_api("assistant.threads.setSuggestedPrompts", NEED_CHANNEL_ID, NEED_THREAD_TS, need("prompts"))
def assistant_threads_set_suggested_prompts(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    ws.joined_channel(params.text("channel_id"))
    prompts = params.json("prompts")
    if not isinstance(prompts, list) or not all(isinstance(p, dict) and p.get("message") for p in prompts):
        raise SlackError("invalid_arguments")
    slack.recording.suggested_prompts.append({"team_id": ws.team_id, **params.decoded()})
    return {}


@web_api("assistant.threads.setTitle", NEED_CHANNEL_ID, NEED_THREAD_TS, need("title"))
def assistant_threads_set_title(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel_id"))
    root = ws.stored(conversation.id, params.text("thread_ts") or "")
    if "assistant_app_thread" in root.fields:
        root.fields["assistant_app_thread"]["title"] = params.text("title")
    slack.recording.title_updates.append({"team_id": ws.team_id, **params.decoded()})
    return {}


@web_api("agents.sessions.setStatus", need("status", error="invalid_status"))
def agents_sessions_set_status(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    if ws.agent_sessions_refusal:
        raise SlackError(ws.agent_sessions_refusal)
    status = params.text("status") or ""
    if status not in AGENT_SESSION_STATUSES:
        raise SlackError("invalid_status")
    conversation = ws.joined_channel(params.text("channel_id"))
    if not params.present("thread_ts"):
        raise SlackError("thread_ts_required")
    ws.agent_sessions.setdefault((conversation.id, params.text("thread_ts") or ""), []).append(status)
    return {"status": status, "agent_status": status, "title": params.text("title") or ""}
