"""Shared files on their way to the assistant: downloaded and transcribed, then uploaded and attached."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable
from pathlib import PurePosixPath
from typing import Protocol

from bot.conversations.inputs import Download, PreparedInput
from bot.conversations.ports import ReplyStream
from bot.conversations.turn import SharedFile
from bot.errors import APIError, APIStatusError, FileRefused
from bot.openai_api.files import FilePurpose, FilesAPI
from bot.store.files import ApiFileRecords
from bot.store.models import Conversation

log = logging.getLogger(__name__)

INDEX_DEADLINE_SECONDS = 120.0
INDEX_POLL_MAX_SECONDS = 2.0


class FileKind(str, enum.Enum):
    """What the assistant does with a shared file."""

    IMAGE = "image"  # seen by the model (vision)
    DOCUMENT = "document"  # read with file search
    DATA = "data"  # worked on with the code interpreter
    AUDIO = "audio"  # voice and video clips, transcribed


IMAGE_TYPES = frozenset({"png", "jpg", "jpeg", "gif", "webp"})
AUDIO_TYPES = frozenset({"m4a", "mp3", "mp4", "mpeg", "mpga", "wav", "webm", "ogg", "flac"})
DATA_TYPES = frozenset({"csv", "tsv", "xlsx", "json"})
# The types the file_search tool reads, as the API documents them.
SEARCHABLE_TYPES = frozenset(
    {"c", "cpp", "cs", "css", "doc", "docx", "go", "html", "java", "js", "json", "md", "pdf", "php", "pptx", "py",
     "rb", "sh", "tex", "ts", "txt"}
)
UPLOAD_REFUSALS = {
    "unsupported_file": "the assistant does not support this file type",
    "invalid_file": "the assistant found the file invalid or damaged",
}


def file_type(file: SharedFile) -> str:
    """The file's extension, else the platform's type name; lower case."""
    suffix = PurePosixPath(file.name).suffix.lstrip(".").lower()
    return suffix or file.filetype.lower()


def classify(file: SharedFile) -> FileKind | None:
    """What the assistant can do with a file; None for a kind it cannot use."""
    kind = file_type(file)
    if kind in IMAGE_TYPES:
        return FileKind.IMAGE
    if kind in AUDIO_TYPES or file.mimetype.startswith(("audio/", "video/")):
        return FileKind.AUDIO
    if kind in DATA_TYPES:
        return FileKind.DATA
    if kind in SEARCHABLE_TYPES:
        return FileKind.DOCUMENT
    return None


def refusal(name: str, reason: str) -> str:
    return f":warning: I couldn't use *{name}*: {reason}."


def _append_line(item: PreparedInput, line: str) -> None:
    """Add a line to what the assistant reads; a channel message without text still names its speaker."""
    if item.text.strip():
        item.text = f"{item.text}\n\n{line}"
    else:
        item.text = f"{item.turn.user_name}: {line}" if item.turn.names_speaker else line


class FileSource(Protocol):
    """The chat platform's way to a shared file's bytes."""

    async def fetch(self, file: SharedFile) -> bytes:
        """The file's content; FileRefused (with a reason for the person) when it cannot be had."""
        ...


class FileDownloadStage:
    """Fetches each shared file, and turns voice and video clips into text, before moderation reads them."""

    def __init__(self, *, source: FileSource, files: FilesAPI, transcription_model: str) -> None:
        self._source = source
        self._files = files
        self._transcription_model = transcription_model

    async def process(self, item: PreparedInput, *, conversation: Conversation, reply: ReplyStream) -> None:
        for file in item.turn.files:
            try:
                await self._take(item, file)
            except FileRefused as exc:
                log.info("file %s in %s not used: %s", file.file_id, conversation.channel_id, exc)
                await reply.notice(refusal(file.name, str(exc)))

    async def _take(self, item: PreparedInput, file: SharedFile) -> None:
        kind = classify(file)
        if kind is None:
            raise FileRefused(f"I can't read {file_type(file) or 'this kind of'} files")
        data = await self._source.fetch(file)
        if kind is not FileKind.AUDIO:
            item.downloads.append(Download(file=file, data=data, kind=kind.value))
            return
        try:
            transcript = await self._files.transcribe(
                name=file.name, data=data, mimetype=file.mimetype or "application/octet-stream",
                model=self._transcription_model,
            )
        except APIError as exc:
            log.warning("transcription of %s failed: %s", file.file_id, exc)
            raise FileRefused("transcribing it failed") from exc
        if not transcript:
            raise FileRefused("I heard no speech in it")
        item.transcripts.append((file.name, transcript))
        _append_line(item, f"[Transcript of {file.name}] {transcript}")


class FileUploadStage:
    """Puts the downloaded files where the assistant reads them; runs after moderation.

    Images go up for vision and into the message; documents into the conversation's vector store
    (file search); data files to the code interpreter. Whatever the bot created for a file that
    then failed is deleted again, so nothing is left orphaned on the API.
    """

    def __init__(self, *, files: FilesAPI, records: ApiFileRecords) -> None:
        self._files = files
        self._records = records

    async def process(self, item: PreparedInput, *, conversation: Conversation, reply: ReplyStream) -> None:
        if item.blocked:
            return
        for name, transcript in item.transcripts:
            await reply.notice(f":studio_microphone: *{name}*: {transcript}")
        attached = []
        for download in item.downloads:
            try:
                await self._attach(item, download, conversation)
            except FileRefused as exc:
                log.info("file %s in %s not attached: %s", download.file.file_id, conversation.channel_id, exc)
                await reply.notice(refusal(download.file.name, str(exc)))
            else:
                attached.append(download.file.name)
        if attached:
            # The assistant sees attachments by id only; their names tell it what the person shared.
            _append_line(item, f"[Shared files: {', '.join(attached)}]")
        if item.turn.files and item.is_empty:
            # Nothing said and nothing usable shared: the notes above are the whole reply, so it ends here.
            item.blocked = True

    async def _attach(self, item: PreparedInput, download: Download, conversation: Conversation) -> None:
        kind = FileKind(download.kind)
        purpose: FilePurpose = "vision" if kind is FileKind.IMAGE else "assistants"
        file_id, fresh = await self._api_file(download, conversation, purpose)
        if kind is FileKind.IMAGE:
            item.content_parts.append({"type": "image_file", "image_file": {"file_id": file_id}})
            return
        tools = [{"type": "code_interpreter"}] if kind is FileKind.DATA else []
        if file_type(download.file) in SEARCHABLE_TYPES:
            try:
                item.vector_store_id = await self._index(conversation, file_id)
            except FileRefused:
                if fresh:
                    await self._records.forget(
                        team_id=conversation.team_id, channel_id=conversation.channel_id, api_file_id=file_id
                    )
                    await _quietly(self._files.delete(file_id), f"delete file {file_id}")
                raise
            tools.append({"type": "file_search"})
        item.attachments.append({"file_id": file_id, "tools": tools})

    async def _api_file(self, download: Download, conversation: Conversation, purpose: FilePurpose) -> tuple[str, bool]:
        """The file's API id: the one recorded for this channel, else a new upload (then True)."""
        keys = {"team_id": conversation.team_id, "channel_id": conversation.channel_id,
                "slack_file_id": download.file.file_id}
        known = await self._records.find(**keys)
        if known is not None:
            return known, False
        file = download.file
        try:
            uploaded = await self._files.upload(
                name=file.name, data=download.data, mimetype=file.mimetype or "application/octet-stream",
                purpose=purpose,
            )
        except APIStatusError as exc:
            log.warning("upload of %s refused: %s", file.file_id, exc)
            raise FileRefused(UPLOAD_REFUSALS.get(exc.code or "", "the assistant refused the upload")) from exc
        except APIError as exc:
            log.warning("upload of %s failed: %s", file.file_id, exc)
            raise FileRefused("uploading it to the assistant failed") from exc
        recorded = await self._records.remember(
            **keys, conversation_id=conversation.id, api_file_id=uploaded.id, purpose=purpose, filename=file.name
        )
        if recorded != uploaded.id:
            # Another conversation of this channel uploaded it at the same moment: use theirs.
            await _quietly(self._files.delete(uploaded.id), f"delete duplicate file {uploaded.id}")
            return recorded, False
        return uploaded.id, True

    async def _index(self, conversation: Conversation, file_id: str) -> str:
        """Add the file to the conversation's vector store (created on first use); returns the store's id."""
        vector_store_id, created = conversation.vector_store_id, False
        if vector_store_id is None:
            try:
                store = await self._files.create_vector_store(
                    name=f"Slack {conversation.team_id}/{conversation.channel_id}/{conversation.thread_key}",
                    metadata={"team_id": conversation.team_id, "channel_id": conversation.channel_id},
                )
            except APIError as exc:
                log.warning("could not create a vector store: %s", exc)
                raise FileRefused("I couldn't set up file search for it") from exc
            vector_store_id, created = store.id, True
        try:
            await self._wait_until_indexed(vector_store_id, file_id)
        except FileRefused:
            await _quietly(self._files.remove_from_vector_store(vector_store_id, file_id), f"unindex {file_id}")
            if created:
                await _quietly(self._files.delete_vector_store(vector_store_id), f"delete store {vector_store_id}")
            raise
        if created:
            await self._records.set_vector_store(conversation.id, vector_store_id)
            conversation.vector_store_id = vector_store_id  # later files of this batch join the same store
        return vector_store_id

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


async def _quietly(cleanup: Awaitable[None], what: str) -> None:
    """A cleanup step that failed is logged for the operator; the person's message goes on."""
    try:
        await cleanup
    except APIError as exc:
        log.warning("cleanup failed (%s): %s", what, exc)
