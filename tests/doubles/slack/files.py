"""Files: uploads through files.getUploadURLExternal and completeUploadExternal, files.info, sharing, downloads."""

from __future__ import annotations

import copy
import mimetypes
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .methods import Params, SlackError, need, web_api
from .workspace import Channel, StoredFile, Workspace, random_id

if TYPE_CHECKING:
    from .server import SlackDouble

SIGN_IN_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Slack</title></head>'
    '<body><h1>Sign in to Slack</h1><form action="/signin" method="post"></form></body></html>'
)


def new_file(ws: Workspace, *, name: str, title: str, user: str, size: int, mimetype: str | None) -> StoredFile:
    """A file record without content yet; it has content once uploaded (or added by a test)."""
    mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
    now = int(time.time())
    info = {
        "id": random_id("F"),
        "created": now,
        "timestamp": now,
        "name": name,
        "title": title,
        "mimetype": mimetype,
        "filetype": Path(name).suffix.lstrip(".").lower() or "binary",
        "pretty_type": (Path(name).suffix.lstrip(".").upper() or "Binary"),
        "user": user,
        "user_team": ws.team_id,
        "editable": False,
        "size": size,
        "mode": "hosted",
        "is_external": False,
        "external_type": "",
        "is_public": False,
        "public_url_shared": False,
        "display_as_bot": False,
        "username": "",
        "channels": [],
        "groups": [],
        "ims": [],
        "comments_count": 0,
    }
    stored = StoredFile(info, content=None)
    ws.files[info["id"]] = stored
    return stored


def file_object(ws: Workspace, stored: StoredFile, *, base_url: str) -> dict[str, Any]:
    """The file as Slack's API returns it, with private URLs on the double at base_url."""
    info = stored.info
    private = f"{base_url}/files-pri/{ws.team_id}-{info['id']}"
    return copy.deepcopy(info) | {
        "url_private": f"{private}/{info['name']}",
        "url_private_download": f"{private}/download/{info['name']}",
        "permalink": f"https://{ws.domain}.slack.com/files/{info['user']}/{info['id']}/{info['name']}",
    }


def shared_files(
    ws: Workspace, conversation: Channel, user: str, files: Iterable[dict[str, Any] | str], *, base_url: str
) -> list[dict[str, Any]]:
    """The files a person attaches to a message, shared into the conversation, as the message carries them."""
    return [share_file(ws, conversation, _posted_file_id(ws, user, file), base_url=base_url) for file in files]


def share_file(ws: Workspace, conversation: Channel, file_id: str, *, base_url: str) -> dict[str, Any]:
    """Share a file into a conversation; returns the file as messages carry it, without its share lists."""
    stored = ws.files.get(file_id)
    if stored is None:
        raise SlackError("file_not_found")
    bucket = "ims" if conversation.is_im else "groups" if conversation.is_private else "channels"
    if conversation.id not in stored.info[bucket]:
        stored.info[bucket].append(conversation.id)
    stored.info["is_public"] = bool(stored.info["channels"])
    shown = file_object(ws, stored, base_url=base_url)
    return {k: v for k, v in shown.items() if k not in ("channels", "groups", "ims")}


def _posted_file_id(ws: Workspace, user: str, file: dict[str, Any] | str) -> str:
    """A file a person attaches: an id or object from add_file(), or a bare file object registered on the fly."""
    if isinstance(file, str):
        if file not in ws.files:
            raise ValueError(f"unknown file {file} in {ws.team_id}; add it with add_file()")
        return file
    if file.get("id") in ws.files:
        return file["id"]
    name = file.get("name", "file")
    stored = new_file(
        ws, name=name, title=file.get("title", name), user=user, size=file.get("size", 0), mimetype=file.get("mimetype")
    )
    if "id" in file:
        ws.files[file["id"]] = ws.files.pop(stored.info["id"])
        stored.info["id"] = file["id"]
    stored.content = b""
    return stored.info["id"]


# -- the upload and download URLs --------------------------------------------------------------


async def uploaded_content(request: web.Request) -> bytes:
    # slack_sdk posts the raw bytes; browsers and curl -F post a multipart "file" field.
    if request.content_type.startswith("multipart/"):
        return (await request.post())["file"].file.read()
    return await request.read()


def accept_upload(workspaces: Iterable[Workspace], upload_id: str, content: bytes) -> web.Response:
    """Store the bytes posted to an upload URL; each URL takes one upload."""
    for ws in workspaces:
        file_id = ws.pending_uploads.pop(upload_id, None)
        if file_id is not None:
            ws.files[file_id].content = content
            return web.Response(text=f"OK - {len(content)}")
    return web.Response(status=404, text="upload URL unknown or already used")


def download(ws: Workspace | None, file_id: str, token: str, *, files_read_granted: bool) -> web.Response:
    stored = ws.files.get(file_id) if ws is not None else None
    granted = files_read_granted and ws is not None and token == ws.bot_token
    if not granted or stored is None or stored.content is None or stored.deleted:
        # Slack answers unauthenticated file requests with its sign-in page, not an error status.
        return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
    return web.Response(body=stored.content, content_type=stored.info["mimetype"])


# -- Web API methods ---------------------------------------------------------------------------


@web_api("files.getUploadURLExternal", need("filename"), need("length"))
def files_get_upload_url_external(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    name = params.text("filename") or ""
    stored = new_file(ws, name=name, title=name, user=ws.bot_user_id, size=params.integer("length", 0), mimetype=None)
    upload_id = secrets.token_hex(12)
    ws.pending_uploads[upload_id] = stored.info["id"]
    return {"upload_url": f"{slack.base_url}/upload/v1/{upload_id}", "file_id": stored.info["id"]}


@web_api("files.completeUploadExternal", need("files"))
def files_complete_upload_external(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    requested = params.json("files")
    if not isinstance(requested, list) or not requested:
        raise SlackError("invalid_arguments")
    completed: list[StoredFile] = []
    for item in requested:
        stored = ws.files.get(item.get("id", "")) if isinstance(item, dict) else None
        if stored is None or stored.content is None:
            raise SlackError("file_not_found")
        stored.info["title"] = item.get("title") or stored.info["title"]
        stored.info["size"] = len(stored.content)
        completed.append(stored)
    channel_ids = [params.text("channel_id")] if params.present("channel_id") else []
    channel_ids += [c for c in (params.text("channels") or "").split(",") if c]
    for channel_id in channel_ids:
        conversation = ws.joined_channel(channel_id)
        shared = [share_file(ws, conversation, s.info["id"], base_url=slack.base_url) for s in completed]
        content = {"text": params.text("initial_comment") or "", "files": shared, "upload": True}
        ws.post_as_bot(conversation.id, content, params.text("thread_ts"))
    return {"files": [file_object(ws, s, base_url=slack.base_url) for s in completed]}


@web_api("files.info", need("file", error="file_not_found"))
def files_info(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    stored = ws.files.get(params.text("file") or "")
    if stored is None or stored.content is None:
        raise SlackError("file_not_found")
    if stored.deleted:
        raise SlackError("file_deleted")
    return {"file": file_object(ws, stored, base_url=slack.base_url), "comments": []}


@web_api("files.delete", need("file", error="file_not_found"))
def files_delete(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    """A bot token with files:write deletes the app's own files; messages that shared one show a tombstone."""
    file_id = params.text("file") or ""
    stored = ws.files.get(file_id)
    if stored is None or stored.content is None:
        raise SlackError("file_not_found")
    if stored.deleted:
        raise SlackError("file_deleted")
    if "files:write" not in ws.scopes:
        raise SlackError("missing_scope")
    if stored.info["user"] != ws.bot_user_id:
        raise SlackError("cant_delete_file")
    stored.deleted = True
    for message in (m for messages in ws.messages.values() for m in messages):
        shared = message.fields.get("files") or []
        if any(file.get("id") == file_id for file in shared):
            message.fields["files"] = [
                {"id": file_id, "mode": "tombstone"} if file.get("id") == file_id else file for file in shared
            ]
    return {}
