"""Shared documents for a chat model: their text (PDF through pypdf), passages, and the passages a question needs."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from bot.conversations.backend import FileKind, InputFile
from bot.conversations.backends.chat.history import estimate_text_tokens
from bot.store.chat import Passage

# Up to this many characters a document goes into the message whole; a longer one is searched instead.
INLINE_DOCUMENT_CHARS = 12_000
# Passages are whole paragraphs packed up to this size, so that each is about one topic.
PASSAGE_CHARS = 1_500
# What the retrieved passages may take of a prompt, and how many there are at most.
RETRIEVAL_TOKEN_BUDGET = 3_000
MAX_PASSAGES = 6
# Data files that are plain text; other data files (spreadsheets, Parquet...) cannot be read here.
TEXT_DATA_EXTENSIONS = frozenset({"csv", "tsv", "json", "jsonl", "ndjson", "txt", "xml", "yaml", "yml"})

# Reasons for InputNotice, which the person reads as ":warning: I couldn't use *name*: <reason>."
UNREADABLE_FILE = "the assistant can't read this kind of file here"
UNREADABLE_DATA = "the assistant can't read this kind of data file here; share it as CSV or JSON"
PDF_WITHOUT_TEXT = "this PDF has no text the assistant can read (it may be a scan)"
UNREADABLE_PDF = "this PDF could not be opened"


@dataclass(frozen=True)
class DocumentText:
    """A file's text, or why there is none."""

    text: str = ""
    problem: str | None = None


async def document_text(file: InputFile) -> DocumentText:
    """The text of a document or text data file; PDFs are parsed off the event loop."""
    if file.extension == "pdf" or file.mimetype == "application/pdf":
        return await asyncio.to_thread(_pdf_text, file.data)
    if file.kind is FileKind.DATA and file.extension not in TEXT_DATA_EXTENSIONS:
        return DocumentText(problem=UNREADABLE_DATA)
    text = _plain_text(file.data)
    if text is None:
        return DocumentText(problem=UNREADABLE_DATA if file.kind is FileKind.DATA else UNREADABLE_FILE)
    return DocumentText(text)


def _pdf_text(data: bytes) -> DocumentText:
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError):  # pypdf raises these on damaged files too
        return DocumentText(problem=UNREADABLE_PDF)
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    return DocumentText(text) if text else DocumentText(problem=PDF_WITHOUT_TEXT)


def _plain_text(data: bytes) -> str | None:
    """UTF-8 text, or None for binary content (a Word file, an image under a text name)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def passages_of(text: str, *, limit: int = PASSAGE_CHARS) -> list[str]:
    """The text cut into passages of whole paragraphs up to `limit` characters (longer paragraphs are cut)."""
    pieces: list[str] = []
    for paragraph in (part.strip() for part in text.split("\n\n")):
        pieces += [paragraph[start : start + limit] for start in range(0, len(paragraph), limit)]
    passages: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > limit:
            passages.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(current)
    return passages


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    norms = math.sqrt(sum(value * value for value in left)) * math.sqrt(sum(value * value for value in right))
    return sum(a * b for a, b in zip(left, right, strict=False)) / norms if norms else 0.0


def best_passages(passages: Sequence[Passage], query: Sequence[float]) -> list[Passage]:
    """The passages most similar to the query, best first, within the retrieval budget."""
    ranked = sorted(passages, key=lambda passage: cosine(passage.embedding, query), reverse=True)
    chosen: list[Passage] = []
    used = 0
    for passage in ranked[:MAX_PASSAGES]:
        cost = estimate_text_tokens(passage.text)
        if chosen and used + cost > RETRIEVAL_TOKEN_BUDGET:
            break
        chosen.append(passage)
        used += cost
    return chosen


def context_message(passages: Sequence[Passage]) -> str:
    """The system message that hands the model the retrieved passages, naming their files."""
    names = ", ".join(dict.fromkeys(passage.file_name for passage in passages))
    quoted = "\n\n".join(
        f'<passage file="{passage.file_name}" part="{passage.position + 1}">\n{passage.text}\n</passage>'
        for passage in passages
    )
    return (
        f"Passages from documents shared in this conversation ({names}), most relevant first. "
        f"Use them to answer when they help, and say which file you used.\n\n{quoted}"
    )
