"""Shared files on their way to the assistant: classified, downloaded, and voice clips transcribed."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Protocol

from bot.conversations.backend import ConversationRef, FileKind, InputFile
from bot.conversations.inputs import PreparedInput
from bot.conversations.ports import ReplyStream
from bot.conversations.turn import SharedFile
from bot.errors import APIError, FileRefused

log = logging.getLogger(__name__)


BYTES_PER_MB = 1024 * 1024
IMAGE_TYPES = frozenset({"png", "jpg", "jpeg", "gif", "webp"})
AUDIO_TYPES = frozenset({"m4a", "mp3", "mp4", "mpeg", "mpga", "wav", "webm", "ogg", "flac"})
DATA_TYPES = frozenset({"csv", "tsv", "xlsx", "json"})
# Documents the assistant can read: the types OpenAI's file_search documents.
SEARCHABLE_TYPES = frozenset(
    {
        "c",
        "cpp",
        "cs",
        "css",
        "doc",
        "docx",
        "go",
        "html",
        "java",
        "js",
        "json",
        "md",
        "pdf",
        "php",
        "pptx",
        "py",
        "rb",
        "sh",
        "tex",
        "ts",
        "txt",
    }
)


def file_type(file: SharedFile) -> str:
    """The file's extension, else the platform's type name; lower case."""
    suffix = PurePosixPath(file.name).suffix.lstrip(".").lower()
    return suffix or file.filetype.lower()


def is_audio(file: SharedFile) -> bool:
    """Voice and video clips, which are transcribed rather than shown to the model."""
    return file_type(file) in AUDIO_TYPES or file.mimetype.startswith(("audio/", "video/"))


def classify(file: SharedFile) -> FileKind | None:
    """What the assistant can do with a file; None for a kind it cannot use (audio is transcribed)."""
    kind = file_type(file)
    if kind in IMAGE_TYPES:
        return FileKind.IMAGE
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


class Transcriber(Protocol):
    async def transcribe(self, *, name: str, data: bytes, mimetype: str, model: str) -> str: ...


class FileSource(Protocol):
    """The chat platform's way to a shared file's bytes."""

    async def fetch(self, file: SharedFile, *, team_id: str) -> bytes:
        """The file's content, fetched as the bot of the workspace it was shared in; FileRefused (with a reason
        for the person) when it cannot be had."""
        ...


class FileDownloadStage:
    """Fetches each shared file, and turns voice and video clips into text, before moderation reads them.

    The files a message keeps are held in memory until it is answered (and copied, base64, for images),
    so together they may take at most ``max_message_mb``; files past that are refused with a note.
    Voice clips count only while transcribed: the transcript is what stays.
    """

    def __init__(
        self, *, source: FileSource, transcriber: Transcriber, transcription_model: str, max_message_mb: int
    ) -> None:
        self._source = source
        self._transcriber = transcriber
        self._transcription_model = transcription_model
        self._max_message_mb = max_message_mb

    async def process(self, item: PreparedInput, *, conversation: ConversationRef, reply: ReplyStream) -> None:
        room = self._max_message_mb * BYTES_PER_MB
        for file in item.turn.files:
            try:
                room -= await self._take(item, file, room=room)
            except FileRefused as exc:
                log.info("file %s in %s not used: %s", file.file_id, conversation.channel_id, exc)
                await reply.notice(refusal(file.name, str(exc)))

    async def _take(self, item: PreparedInput, file: SharedFile, *, room: int) -> int:
        """Take the file into the message; returns the bytes it holds there."""
        kind = None if is_audio(file) else classify(file)
        if kind is None and not is_audio(file):
            raise FileRefused(f"I can't read {file_type(file) or 'this kind of'} files")
        if kind is not None and file.size > room:
            raise FileRefused(self._no_room())
        data = await self._source.fetch(file, team_id=item.turn.team_id)
        if kind is not None:
            if len(data) > room:  # the event understated its size
                raise FileRefused(self._no_room())
            mimetype = file.mimetype or "application/octet-stream"
            item.files.append(InputFile(key=file.file_id, name=file.name, kind=kind, mimetype=mimetype, data=data))
            return len(data)
        try:
            transcript = await self._transcriber.transcribe(
                name=file.name,
                data=data,
                mimetype=file.mimetype or "application/octet-stream",
                model=self._transcription_model,
            )
        except APIError as exc:
            log.warning("transcription of %s failed: %s", file.file_id, exc)
            raise FileRefused("transcribing it failed") from exc
        if not transcript:
            raise FileRefused("I heard no speech in it")
        item.transcripts.append((file.name, transcript))
        _append_line(item, f"[Transcript of {file.name}] {transcript}")
        return 0

    def _no_room(self) -> str:
        return f"the files of one message may take {self._max_message_mb} MB together; share it in another message"


class TranscriptStage:
    """After moderation: shows each voice clip's transcript in the thread, where the assistant's reading of
    it can be checked; a message whose files all failed and that says nothing ends with those notes."""

    async def process(self, item: PreparedInput, *, conversation: ConversationRef, reply: ReplyStream) -> None:
        if item.blocked:
            return
        for name, transcript in item.transcripts:
            await reply.notice(f":studio_microphone: *{name}*: {transcript}")
        if item.turn.files and item.is_empty:
            item.blocked = True
