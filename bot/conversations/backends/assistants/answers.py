"""A run's finished answer: the files it made fetched, its file citations turned into [n] markers."""

from __future__ import annotations

from collections.abc import Sequence

from bot.conversations.backend import Citation, Completed
from bot.conversations.backends.openai_files import ConversationFiles
from bot.conversations.turn import AnswerFile, WithheldFile
from bot.openai_api.models import Annotation, ImageFileContent, Message, Text, TextContent


class AnswerComposer:
    """Builds the Completed of a run from its assistant messages."""

    def __init__(self, files: ConversationFiles) -> None:
        self._files = files

    async def compose(self, messages: Sequence[Message]) -> Completed:
        texts: list[str] = []
        made: dict[str, AnswerFile | WithheldFile] = {}  # by API file id, so a file linked twice is shared once
        cited: dict[str, int] = {}  # API file id -> citation number
        for message in messages:
            for part in message.content:
                if isinstance(part, TextContent):
                    texts.append(await self._text(part.text, made, cited))
                elif isinstance(part, ImageFileContent) and part.image_file.file_id:
                    await self._fetch(part.image_file.file_id, made, link=None)
        citations = [Citation(number, await self._files.source_name(file_id)) for file_id, number in cited.items()]
        text = "\n\n".join(piece for piece in texts if piece).strip()
        files = tuple(file for file in made.values() if isinstance(file, AnswerFile))
        withheld = tuple(file for file in made.values() if isinstance(file, WithheldFile))
        return Completed(text, files, tuple(citations), withheld)

    async def _text(self, text: Text, made: dict[str, AnswerFile | WithheldFile], cited: dict[str, int]) -> str:
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

    async def _fetch(self, file_id: str, made: dict[str, AnswerFile | WithheldFile], *, link: str | None) -> None:
        if file_id in made:
            return
        fetched = await self._files.answer_file(file_id, link=link)
        if fetched is not None:
            made[file_id] = fetched


def _annotated_file(annotation: Annotation) -> str | None:
    reference = annotation.file_citation if annotation.type == "file_citation" else annotation.file_path
    return reference.file_id if reference is not None else None
