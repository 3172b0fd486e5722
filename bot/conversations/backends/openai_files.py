"""OpenAI file handling shared by the backends that use /files and vector stores (assistants, responses).

API, for the backends that import it:

    FILE_SEARCH_TYPES                  extensions the file_search tool reads, as the API documents them
    UPLOAD_REFUSALS                    API error code -> plain words for a refused file
    ConversationFiles(files, records)
      .upload(conversation, file, purpose=...) -> UploadedFile(id, fresh)   reuses the channel's earlier upload
      .create_vector_store(conversation) -> str                             the new store's id
      .index(vector_store_id, file_id)                                      add and wait until searchable
      .discard(conversation, file_id)                                       forget the record, delete the file
      .answer_file(file_id, link=...) -> AnswerFile | None                  a file the model made, for Slack
      .source_name(file_id) -> str                                          a cited file's name
      .delete_file / .delete_vector_store (404 counts as deleted)
    quietly(cleanup, what)             run a cleanup step; an API failure is only logged
    unless_gone(deletion)              run a deletion; a 404 counts as deleted

Every method that can refuse a file raises bot.errors.FileRefused with a reason for the person.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import PurePosixPath

from bot.conversations.backend import ConversationRef, InputFile
from bot.conversations.turn import AnswerFile
from bot.errors import APIError, APIStatusError, FileRefused, NotFoundError
from bot.openai_api.files import FilePurpose, FilesAPI
from bot.store.files import ApiFileRecords

log = logging.getLogger(__name__)

INDEX_DEADLINE_SECONDS = 120.0
INDEX_POLL_MAX_SECONDS = 2.0
UNKNOWN_SOURCE = "a file"
# The types the file_search tool reads, as the API documents them.
FILE_SEARCH_TYPES = frozenset(
    {"c", "cpp", "cs", "css", "doc", "docx", "go", "html", "java", "js", "json", "md", "pdf", "php", "pptx", "py",
     "rb", "sh", "tex", "ts", "txt"}
)
UPLOAD_REFUSALS = {
    "unsupported_file": "the assistant does not support this file type",
    "invalid_file": "the assistant found the file invalid or damaged",
}


@dataclass(frozen=True)
class UploadedFile:
    id: str
    fresh: bool  # uploaded now (so the conversation owns it), not reused from an earlier message


async def quietly(cleanup: Awaitable[object], what: str) -> None:
    """A cleanup step that failed is logged for the operator; the person's message goes on."""
    try:
        await cleanup
    except APIError as exc:
        log.warning("cleanup failed (%s): %s", what, exc)


async def unless_gone(deletion: Awaitable[object]) -> None:
    """Delete something; one the API no longer has counts as deleted."""
    try:
        await deletion
    except NotFoundError as exc:
        log.info("already deleted on the API (%s)", exc)


class ConversationFiles:
    """A conversation's files on the API: uploads reused per channel, its vector store, the model's output files."""

    def __init__(self, files: FilesAPI, records: ApiFileRecords) -> None:
        self._files = files
        self._records = records

    async def upload(self, conversation: ConversationRef, file: InputFile, *, purpose: FilePurpose) -> UploadedFile:
        """The file's API id: the one recorded for this channel, else a new upload."""
        keys = {"team_id": conversation.team_id, "channel_id": conversation.channel_id, "slack_file_id": file.key}
        known = await self._records.find(**keys)
        if known is not None:
            return UploadedFile(known, fresh=False)
        try:
            uploaded = await self._files.upload(
                name=file.name, data=file.data, mimetype=file.mimetype or "application/octet-stream", purpose=purpose
            )
        except APIStatusError as exc:
            log.warning("upload of %s refused: %s", file.key, exc)
            raise FileRefused(UPLOAD_REFUSALS.get(exc.code or "", "the assistant refused the upload")) from exc
        except APIError as exc:
            log.warning("upload of %s failed: %s", file.key, exc)
            raise FileRefused("uploading it to the assistant failed") from exc
        recorded = await self._records.remember(
            **keys, conversation_id=conversation.id, api_file_id=uploaded.id, purpose=purpose, filename=file.name
        )
        if recorded != uploaded.id:
            # Another conversation of this channel uploaded it at the same moment: use theirs.
            await quietly(self._files.delete(uploaded.id), f"delete duplicate file {uploaded.id}")
            return UploadedFile(recorded, fresh=False)
        return UploadedFile(uploaded.id, fresh=True)

    async def discard(self, conversation: ConversationRef, file_id: str) -> None:
        """Undo an upload that turned out unusable, so nothing is left orphaned on the API."""
        await self._records.forget(team_id=conversation.team_id, channel_id=conversation.channel_id, api_file_id=file_id)
        await quietly(self._files.delete(file_id), f"delete file {file_id}")

    async def create_vector_store(self, conversation: ConversationRef) -> str:
        try:
            store = await self._files.create_vector_store(
                name=f"Slack {conversation.team_id}/{conversation.channel_id}/{conversation.thread_key}",
                metadata={"team_id": conversation.team_id, "channel_id": conversation.channel_id},
            )
        except APIError as exc:
            log.warning("could not create a vector store: %s", exc)
            raise FileRefused("I couldn't set up file search for it") from exc
        return store.id

    async def index(self, vector_store_id: str, file_id: str) -> None:
        """Add the file to the vector store and wait until it is searchable; on refusal it is taken out again."""
        try:
            await self._wait_until_indexed(vector_store_id, file_id)
        except FileRefused:
            await quietly(self._files.remove_from_vector_store(vector_store_id, file_id), f"unindex {file_id}")
            raise

    async def _wait_until_indexed(self, vector_store_id: str, file_id: str) -> None:
        deadline = time.monotonic() + INDEX_DEADLINE_SECONDS
        delay = 0.05
        try:
            indexed = await self._files.add_to_vector_store(vector_store_id, file_id)
            while indexed.status == "in_progress":
                if time.monotonic() > deadline:
                    raise FileRefused("preparing it for search took too long")
                await asyncio.sleep(delay)
                delay = min(delay * 2, INDEX_POLL_MAX_SECONDS)
                indexed = await self._files.vector_store_file(vector_store_id, file_id)
        except APIError as exc:
            log.warning("indexing %s in %s failed: %s", file_id, vector_store_id, exc)
            raise FileRefused("preparing it for search failed") from exc
        if indexed.status != "completed":
            code = indexed.last_error.code if indexed.last_error else None
            log.warning("indexing %s ended %s (%s)", file_id, indexed.status, code)
            raise FileRefused(UPLOAD_REFUSALS.get(code or "", "the assistant could not prepare it for search"))

    async def answer_file(self, file_id: str, *, link: str | None) -> AnswerFile | None:
        """A file the model made, named after its sandbox link or its API name; None if it cannot be had."""
        try:
            data = await self._files.content(file_id)
            name = PurePosixPath(link.removeprefix("sandbox:")).name if link else ""
            if not name:
                name = PurePosixPath((await self._files.retrieve(file_id)).filename).name
        except APIError as exc:
            log.warning("could not fetch the answer's file %s: %s", file_id, exc)
            return None
        if link is None and not PurePosixPath(name).suffix:
            # Code interpreter images often come without an extension; Slack previews need one.
            name = f"{name or file_id}.png"
        return AnswerFile(name=name or file_id, data=data, link=link)

    async def source_name(self, file_id: str) -> str:
        """The cited file's name: as uploaded, which for a file from Slack is its Slack name."""
        try:
            return PurePosixPath((await self._files.retrieve(file_id)).filename).name or UNKNOWN_SOURCE
        except APIError as exc:
            log.info("cited file %s could not be looked up: %s", file_id, exc)
            return UNKNOWN_SOURCE

    async def delete_file(self, file_id: str) -> None:
        await unless_gone(self._files.delete(file_id))

    async def delete_vector_store(self, vector_store_id: str) -> None:
        await unless_gone(self._files.delete_vector_store(vector_store_id))
