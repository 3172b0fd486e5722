"""The assistant's finished answer: the files it made fetched, its citations turned into footnotes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import PurePosixPath

from bot.conversations.turn import AnswerFile, ReplyCompleted
from bot.errors import APIError
from bot.openai_api.files import FilesAPI
from bot.openai_api.models import Annotation, ImageFileContent, Message, Text, TextContent

log = logging.getLogger(__name__)

UNKNOWN_SOURCE = "a file"


class AnswerComposer:
    """Builds the ReplyCompleted of a run from its assistant messages."""

    def __init__(self, files: FilesAPI) -> None:
        self._files = files

    async def compose(self, messages: Sequence[Message]) -> ReplyCompleted:
        texts: list[str] = []
        made: dict[str, AnswerFile] = {}  # by API file id, so a file linked twice is shared once
        cited: dict[str, int] = {}  # API file id -> footnote number
        for message in messages:
            for part in message.content:
                if isinstance(part, TextContent):
                    texts.append(await self._text(part.text, made, cited))
                elif isinstance(part, ImageFileContent) and part.image_file.file_id:
                    await self._fetch(part.image_file.file_id, made, link=None)
        text = "\n\n".join(piece for piece in texts if piece).strip()
        if cited:
            names = [await self._source_name(file_id) for file_id in cited]
            text += "\n\n" + "\n".join(f"[{number}] {name}" for number, name in enumerate(names, start=1))
        return ReplyCompleted(text, tuple(made.values()))

    async def _text(self, text: Text, made: dict[str, AnswerFile], cited: dict[str, int]) -> str:
        value = text.value
        for annotation in text.annotations:
            file_id = _annotated_file(annotation)
            if not annotation.text or file_id is None:
                continue
            if annotation.type == "file_citation":
                number = cited.setdefault(file_id, len(cited) + 1)
                value = value.replace(annotation.text, f"[{number}]")
            elif annotation.type == "file_path":
                # The sandbox link stays in the text; the platform points it at the shared file.
                await self._fetch(file_id, made, link=annotation.text)
        return value

    async def _fetch(self, file_id: str, made: dict[str, AnswerFile], *, link: str | None) -> None:
        if file_id in made:
            return
        try:
            data = await self._files.content(file_id)
            name = PurePosixPath(link.removeprefix("sandbox:")).name if link else ""
            if not name:
                name = PurePosixPath((await self._files.retrieve(file_id)).filename).name
        except APIError as exc:
            log.warning("could not fetch the answer's file %s: %s", file_id, exc)
            return
        if link is None and not PurePosixPath(name).suffix:
            # Code interpreter images often come without an extension; Slack previews need one.
            name = f"{name or file_id}.png"
        made[file_id] = AnswerFile(name=name or file_id, data=data, link=link)

    async def _source_name(self, file_id: str) -> str:
        """The cited file's name: as uploaded, which for a file from Slack is its Slack name."""
        try:
            return PurePosixPath((await self._files.retrieve(file_id)).filename).name or UNKNOWN_SOURCE
        except APIError as exc:
            log.info("cited file %s could not be looked up: %s", file_id, exc)
            return UNKNOWN_SOURCE


def _annotated_file(annotation: Annotation) -> str | None:
    reference = annotation.file_citation if annotation.type == "file_citation" else annotation.file_path
    return reference.file_id if reference is not None else None
