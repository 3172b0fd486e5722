"""OpenAI file handling shared by the backends that use /files and vector stores (assistants, responses).

API, for the backends that import it:

    FILE_SEARCH_TYPES                  extensions the file_search tool reads, as the API documents them
    UPLOAD_REFUSALS                    API error code -> plain words for a refused file
    ConversationFiles(files, records, max_answer_file_mb=...)
      .upload(conversation, file, purpose=...) -> UploadedFile(id, fresh)   reuses the channel's earlier upload
      .create_vector_store(conversation) -> str                             the new store's id
      .index(vector_store_id, file_id)                                      add and wait until searchable
      .discard(conversation, file_id)                                       forget the record, delete the file
      .release(conversation_id, uploaded=...)                               delete the files only it still used
      .answer_file(file_id, link=...) -> AnswerFile | WithheldFile | None   a file the model made, for Slack
      .source_name(file_id) -> str                                          a cited file's name
      .delete_file / .delete_vector_store (404 counts as deleted)
    answer_file_too_large(max_mb)      why a file the model made is withheld
    quietly(cleanup, what)             run a cleanup step; an API failure is only logged
    unless_gone(deletion)              run a deletion; a 404 counts as deleted

Every method that can refuse a file raises bot.errors.FileRefused with a reason for the person.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from bot.conversations.backend import ConversationRef, InputFile
from bot.conversations.files import SEARCHABLE_TYPES
from bot.conversations.turn import AnswerFile, WithheldFile
from bot.errors import APIConnectionError, APIError, APIStatusError, ContentTooLarge, FileRefused, NotFoundError
from bot.openai_api.files import FilePurpose, FilesAPI, OpenAIFile, VectorStore
from bot.store.files import ApiFileRecords

log = logging.getLogger(__name__)

INDEX_DEADLINE_SECONDS = 120.0
# How far the API's clock may be behind ours when a lost upload is recognised by its creation time.
CLOCK_SKEW_SECONDS = 60
INDEX_POLL_MAX_SECONDS = 2.0
UNKNOWN_SOURCE = "a file"
BYTES_PER_MB = 1024 * 1024
# The file_search tool reads exactly the documents the bot accepts (the types OpenAI documents for it).
FILE_SEARCH_TYPES = SEARCHABLE_TYPES
UPLOAD_REFUSALS = {
    "unsupported_file": "the assistant does not support this file type",
    "invalid_file": "the assistant found the file invalid or damaged",
}


@dataclass(frozen=True)
class UploadedFile:
    id: str
    fresh: bool  # uploaded now (so the conversation owns it), not reused from an earlier message


def answer_file_too_large(max_mb: int) -> str:
    """Why a file the assistant made is not shared: the bot reads at most MAX_FILE_MB of it."""
    return f"it is larger than the {max_mb} MB limit"


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

    def __init__(self, files: FilesAPI, records: ApiFileRecords, *, max_answer_file_mb: int) -> None:
        self._files = files
        self._records = records
        self.max_answer_file_mb = max_answer_file_mb

    async def upload(self, conversation: ConversationRef, file: InputFile, *, purpose: FilePurpose) -> UploadedFile:
        """The file's API id: the one recorded for this channel, else a new upload."""
        keys = {"team_id": conversation.team_id, "channel_id": conversation.channel_id, "slack_file_id": file.key}
        known = await self._records.use(**keys, conversation_id=conversation.id)
        if known is not None:
            return UploadedFile(known, fresh=False)
        try:
            uploaded = await self._upload_once(file, purpose=purpose)
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

    async def _upload_once(self, file: InputFile, *, purpose: FilePurpose) -> OpenAIFile:
        """Upload the file; one whose answer was lost (or ambiguous) is looked for before it goes up again."""

        def send() -> Awaitable[OpenAIFile]:
            return self._files.upload(
                name=file.name, data=file.data, mimetype=file.mimetype or "application/octet-stream", purpose=purpose
            )

        sent_at = time.time()
        try:
            return await send()
        except APIConnectionError as exc:
            if not exc.request_sent:
                raise
            lost = await self._lost_upload(file, purpose=purpose, sent_at=sent_at)
            if lost is not None:
                log.warning("upload of %s lost its answer (%s); it is on the API as %s", file.key, exc, lost.id)
                return lost
            log.warning("upload of %s lost its answer (%s) and is not on the API; uploading it again", file.key, exc)
            return await send()

    async def _lost_upload(self, file: InputFile, *, purpose: FilePurpose, sent_at: float) -> OpenAIFile | None:
        """The file a lost upload made, if the API has exactly one that can be it.

        Files carry no metadata, so it is known by what it has: this name, size and purpose, created
        since just before it was sent, and held by no record (so not another conversation's upload).
        """
        candidates = [
            uploaded
            for uploaded in await self._files.newest_files(purpose=purpose)
            if uploaded.filename == file.name
            and uploaded.bytes == len(file.data)
            and (uploaded.created_at or 0) >= sent_at - CLOCK_SKEW_SECONDS
        ]
        unrecorded = set(await self._records.unrecorded([uploaded.id for uploaded in candidates]))
        matches = [uploaded for uploaded in candidates if uploaded.id in unrecorded]
        return matches[0] if len(matches) == 1 else None

    async def discard(self, conversation: ConversationRef, file_id: str) -> None:
        """Undo an upload that turned out unusable, so nothing is left orphaned on the API."""
        await self._records.forget(
            team_id=conversation.team_id, channel_id=conversation.channel_id, api_file_id=file_id
        )
        await quietly(self._files.delete(file_id), f"delete file {file_id}")

    async def create_vector_store(self, conversation: ConversationRef) -> str:
        try:
            store = await self._create_vector_store_once(conversation)
        except APIError as exc:
            log.warning("could not create a vector store: %s", exc)
            raise FileRefused("I couldn't set up file search for it") from exc
        return store.id

    async def _create_vector_store_once(self, conversation: ConversationRef) -> VectorStore:
        """A new vector store; one whose answer was lost (or ambiguous) is found by its creation key first."""
        creation_key = secrets.token_hex(8)

        def send() -> Awaitable[VectorStore]:
            return self._files.create_vector_store(
                name=f"Slack {conversation.team_id}/{conversation.channel_id}/{conversation.thread_key}",
                metadata={
                    "team_id": conversation.team_id,
                    "channel_id": conversation.channel_id,
                    "creation_key": creation_key,
                },
            )

        try:
            return await send()
        except APIConnectionError as exc:
            if not exc.request_sent:
                raise
            for store in await self._files.newest_vector_stores():
                if (store.metadata or {}).get("creation_key") == creation_key:
                    log.warning("creating a vector store lost its answer (%s); it is on the API as %s", exc, store.id)
                    return store
            log.warning("creating a vector store lost its answer (%s) and made none; creating it again", exc)
            return await send()

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

    async def answer_file(self, file_id: str, *, link: str | None) -> AnswerFile | WithheldFile | None:
        """A file the model made, named after its sandbox link or its API name; withheld when larger than
        MAX_FILE_MB (nothing past that is read); None if it cannot be had."""
        try:
            name = PurePosixPath(link.removeprefix("sandbox:")).name if link else ""
            if not name:
                name = PurePosixPath((await self._files.retrieve(file_id)).filename).name
            if link is None and not PurePosixPath(name).suffix:
                # Code interpreter images often come without an extension; Slack previews need one.
                name = f"{name or file_id}.png"
            name = name or file_id
            data = await self._files.content(file_id, max_bytes=self.max_answer_file_mb * BYTES_PER_MB)
        except ContentTooLarge as exc:
            log.warning("the answer's file %s is not fetched: %s", file_id, exc)
            return WithheldFile(name, answer_file_too_large(self.max_answer_file_mb))
        except APIError as exc:
            log.warning("could not fetch the answer's file %s: %s", file_id, exc)
            return None
        return AnswerFile(name=name, data=data, link=link)

    async def source_name(self, file_id: str) -> str:
        """The cited file's name: as uploaded, which for a file from Slack is its Slack name."""
        try:
            return PurePosixPath((await self._files.retrieve(file_id)).filename).name or UNKNOWN_SOURCE
        except APIError as exc:
            log.info("cited file %s could not be looked up: %s", file_id, exc)
            return UNKNOWN_SOURCE

    async def delete_file(self, file_id: str) -> None:
        await unless_gone(self._files.delete(file_id))

    async def release(self, conversation_id: int, *, uploaded: Sequence[str]) -> None:
        """A conversation is forgotten: delete the files no other conversation of its channel uses.

        Its uses are released first: a deletion the API then refuses leaves that file without a record,
        and the next attempt deletes it as one of the files the conversation ``uploaded`` that no
        record holds (any more).
        """
        unused = await self._records.release(conversation_id)
        for file_id in dict.fromkeys([*unused, *await self._records.unrecorded(uploaded)]):
            await self.delete_file(file_id)

    async def delete_vector_store(self, vector_store_id: str) -> None:
        await unless_gone(self._files.delete_vector_store(vector_store_id))
