"""The text inside shared documents and text data files (PDF through pypdf), for whatever reads it: moderation
before anything reaches a backend, and backends that hand the text itself to the model."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from bot.conversations.backend import FileKind, InputFile

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
