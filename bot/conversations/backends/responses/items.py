"""Conversation items in the Responses API's shapes: what we add, how we recognise it, how answers read."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bot.conversations.backend import ToolStatus
from bot.conversations.backends.openai_files import BYTES_PER_MB, ConversationFiles, answer_file_too_large
from bot.conversations.turn import AnswerFile, Citation, HistoryMessage, ReplyCompleted, WithheldFile
from bot.errors import APIError, ContentTooLarge
from bot.openai_api.responses import ResponsesAPI

log = logging.getLogger(__name__)

TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})
# Output item type -> the neutral tool name of ToolActivity.
BUILTIN_CALLS = {
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "web_search_call": "web_search",
    "image_generation_call": "image_generation",
    "mcp_call": "mcp",
}
FAILED_ITEM_STATUSES = frozenset({"failed", "incomplete"})
# A Markdown link, optionally in parentheses: how answers with web search cite a page inline.
INLINE_LINK = re.compile(r"\(?\[[^\]\n]*\]\([^()\s]*\)\)?")


def history_item(message: HistoryMessage) -> dict[str, Any]:
    return {"type": "message", "role": message.role, "content": message.text}


def user_item(text: str, image_file_ids: Sequence[str]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}] if text else []
    parts += [{"type": "input_image", "file_id": file_id, "detail": "auto"} for file_id in image_file_ids]
    return {"type": "message", "role": "user", "content": parts}


def item_text(item: dict[str, Any]) -> str:
    """A message item's text parts joined (a string content counts as one part)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or () if part.get("type") in TEXT_PART_TYPES)


def image_ids(item: dict[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return []
    return [part.get("file_id") or "" for part in content or () if part.get("type") == "input_image"]


def _same_message(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    return (
        theirs.get("type") == "message"
        and theirs.get("role") == ours["role"]
        and item_text(theirs) == item_text(ours)
        and image_ids(theirs) == image_ids(ours)
    )


def find_added(ours: Sequence[dict[str, Any]], existing: Sequence[dict[str, Any]]) -> list[str] | None:
    """The ids of our items if the conversation already holds them, in order and adjacent; else None.

    Items carry no metadata, so they are recognised by what they say. The newest match wins: the same
    words sent in an earlier, abandoned batch sit further up.
    """
    for start in range(len(existing) - len(ours), -1, -1):
        window = existing[start : start + len(ours)]
        if all(_same_message(mine, theirs) for mine, theirs in zip(ours, window, strict=True)):
            return [item["id"] for item in window]
    return None


def added_prefix(ours: Sequence[dict[str, Any]], existing: Sequence[dict[str, Any]]) -> list[str]:
    """The ids of the longest beginning of our items that the conversation ends with.

    A worker that died after adding some inputs of its batch leaves them at the conversation's end; the
    worker taking over may answer them in a larger batch, so only the rest may be added.
    """
    for length in range(min(len(ours), len(existing)), 0, -1):
        tail = existing[len(existing) - length :]
        if all(_same_message(mine, theirs) for mine, theirs in zip(ours[:length], tail, strict=True)):
            return [item["id"] for item in tail]
    return []


def open_function_calls(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The function calls among these items that no function_call_output among them answers."""
    answered = {item.get("call_id") for item in items if item.get("type") == "function_call_output"}
    return [item for item in items if item.get("type") == "function_call" and item.get("call_id") not in answered]


@dataclass(frozen=True)
class ToolItem:
    call_id: str
    tool: str
    name: str


def tool_item(item: dict[str, Any]) -> ToolItem | None:
    """What a tool-call output item is, for ToolActivity; None for messages and other items."""
    kind = item.get("type", "")
    if kind == "function_call":
        return ToolItem(item.get("call_id") or item.get("id", ""), "function", item.get("name", ""))
    if kind in BUILTIN_CALLS:
        return ToolItem(item.get("id", ""), BUILTIN_CALLS[kind], BUILTIN_CALLS[kind])
    return None


def tool_status(item: dict[str, Any]) -> ToolStatus:
    return ToolStatus.FAILED if item.get("status") in FAILED_ITEM_STATUSES else ToolStatus.COMPLETED


class AnswerReader:
    """Turns a response's output items into the person's answer: text with [n] markers, citations, files."""

    def __init__(self, api: ResponsesAPI, files: ConversationFiles) -> None:
        self._api = api
        self._files = files

    async def compose(self, output: Sequence[dict[str, Any]]) -> ReplyCompleted:
        texts: list[str] = []
        # By file id (or image call id), so that a file cited twice is shared once.
        made: dict[str, AnswerFile | WithheldFile] = {}
        cited: dict[tuple[str, str], Citation] = {}
        for item in output:
            if item.get("type") == "message" and item.get("role") == "assistant":
                for part in item.get("content") or ():
                    if part.get("type") == "output_text":
                        texts.append(await self._annotated(part, cited, made))
            elif item.get("type") == "image_generation_call" and item.get("result"):
                image = _generated_image(item, number=len(made) + 1)
                if image is not None:
                    made[item.get("id", "")] = image
        text = "\n\n".join(piece for piece in texts if piece).strip()
        files = tuple(file for file in made.values() if isinstance(file, AnswerFile))
        withheld = tuple(file for file in made.values() if isinstance(file, WithheldFile))
        return ReplyCompleted(text, files, tuple(cited.values()), withheld)

    async def _annotated(
        self, part: dict[str, Any], cited: dict[tuple[str, str], Citation], made: dict[str, AnswerFile | WithheldFile]
    ) -> str:
        text: str = part.get("text", "")
        markers: list[tuple[int, int, int]] = []  # (start, end, citation number): text[start:end] becomes [n]
        for annotation in part.get("annotations") or ():
            kind = annotation.get("type")
            if kind == "file_citation":
                key = ("file", annotation.get("file_id", ""))
                if key not in cited:
                    title = annotation.get("filename") or await self._files.source_name(key[1])
                    cited[key] = Citation(len(cited) + 1, title)
                position = _clamp(annotation.get("index"), text)
                markers.append((position, position, cited[key].number))
            elif kind == "url_citation":
                key = ("url", annotation.get("url", ""))
                if key not in cited:
                    # No title: the platform names the link itself (by its site), never with the raw URL.
                    cited[key] = Citation(len(cited) + 1, annotation.get("title") or "", url=key[1])
                markers.append((*_source_span(annotation, text), cited[key].number))
            elif kind == "container_file_citation":
                await self._container_file(annotation, text, made)
        # Replacing from the end keeps the earlier positions valid.
        for start, end, number in sorted(set(markers), reverse=True):
            text = f"{text[:start]}[{number}]{text[end:]}"
        return text

    async def _container_file(
        self, annotation: dict[str, Any], text: str, made: dict[str, AnswerFile | WithheldFile]
    ) -> None:
        file_id = annotation.get("file_id", "")
        if file_id in made:
            return
        start, end = _clamp(annotation.get("start_index"), text), _clamp(annotation.get("end_index"), text)
        link = text[start:end] or None
        # The name may be the container's path (/mnt/data/x.csv); Slack shows the file's own name.
        name = PurePosixPath(annotation.get("filename") or "").name or file_id
        max_mb = self._files.max_answer_file_mb
        try:
            data = await self._api.container_file_content(
                annotation.get("container_id", ""), file_id, max_bytes=max_mb * BYTES_PER_MB
            )
        except ContentTooLarge as exc:
            log.warning("the answer's container file %s is not fetched: %s", file_id, exc)
            made[file_id] = WithheldFile(name, answer_file_too_large(max_mb))
            return
        except APIError as exc:
            log.warning("could not fetch the answer's container file %s: %s", file_id, exc)
            return
        made[file_id] = AnswerFile(name=name, data=data, link=link)


def _generated_image(item: dict[str, Any], *, number: int) -> AnswerFile | None:
    try:
        data = base64.b64decode(item["result"], validate=True)
    except (binascii.Error, ValueError):
        log.warning("image generation call %s returned no valid base64 image", item.get("id"))
        return None
    return AnswerFile(name=f"image-{number}.png", data=data)


def _source_span(annotation: dict[str, Any], text: str) -> tuple[int, int]:
    """Where a web source's [n] goes: in place of the inline link the model wrote to it, with its parentheses
    ("... ([site](url?utm_source=openai))", as answers with web search read in 2025-2026), else after the text
    the annotation covers."""
    start, end = _clamp(annotation.get("start_index"), text), _clamp(annotation.get("end_index"), text)
    span = text[start:end]
    url = str(annotation.get("url") or "")
    if not (url and url in span) and not INLINE_LINK.fullmatch(span):
        return end, end
    if text[start - 1 : start] == "(" and text[end : end + 1] == ")":
        start, end = start - 1, end + 1
    if text[start - 1 : start] == " ":
        start -= 1  # the number sits against the text it backs, as a file citation's does ("grew 5%[1].")
    return start, end


def _clamp(index: Any, text: str) -> int:
    return min(max(index, 0), len(text)) if isinstance(index, int) else len(text)
