"""Files, vector stores and audio transcription endpoints of the OpenAI API, over the one client."""

from __future__ import annotations

from typing import Any, Literal

from bot.openai_api.client import OpenAIClient, path_segment
from bot.openai_api.models import APIModel, LastError, Page, Thread

FilePurpose = Literal["assistants", "vision"]


class OpenAIFile(APIModel):
    id: str
    object: str = "file"
    bytes: int | None = None
    created_at: int | None = None
    filename: str = ""
    purpose: str | None = None


class VectorStore(APIModel):
    id: str
    object: str = "vector_store"
    status: str | None = None
    metadata: dict[str, str] | None = None


class VectorStoreFile(APIModel):
    id: str
    object: str = "vector_store.file"
    vector_store_id: str | None = None
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    last_error: LastError | None = None  # code: server_error, unsupported_file or invalid_file


class Transcription(APIModel):
    text: str


class FilesAPI:
    """Uploads, downloads and deletes API files; builds vector stores; transcribes audio."""

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client

    # ---- files --------------------------------------------------------------------------------

    async def upload(self, *, name: str, data: bytes, mimetype: str, purpose: FilePurpose) -> OpenAIFile:
        """``POST /files`` as multipart form data; never re-sent once it may have arrived (see ``newest_files``)."""
        return await self._client.request_model(
            OpenAIFile,
            "POST",
            "/files",
            files={"file": (name, data, mimetype)},
            data={"purpose": purpose},
            retry_when_sent=False,
        )

    async def newest_files(self, *, purpose: FilePurpose, limit: int = 100) -> list[OpenAIFile]:
        """The organisation's newest files of this purpose, newest first: where a lost upload would be."""
        params = {"purpose": purpose, "order": "desc", "limit": limit}
        return (await self._client.request_model(Page[OpenAIFile], "GET", "/files", params=params)).data

    async def retrieve(self, file_id: str) -> OpenAIFile:
        return await self._client.request_model(OpenAIFile, "GET", f"/files/{path_segment(file_id)}")

    async def content(self, file_id: str, *, max_bytes: int) -> bytes:
        """The file's bytes; ContentTooLarge past ``max_bytes``."""
        return await self._client.request_bytes("GET", f"/files/{path_segment(file_id)}/content", max_bytes=max_bytes)

    async def delete(self, file_id: str) -> None:
        await self._client.request("DELETE", f"/files/{path_segment(file_id)}")

    # ---- vector stores ------------------------------------------------------------------------

    async def create_vector_store(self, *, name: str, metadata: dict[str, str]) -> VectorStore:
        """Never re-sent once it may have arrived: a lost one is found by its metadata (``newest_vector_stores``)."""
        body: dict[str, Any] = {"name": name, "metadata": metadata}
        return await self._client.request_model(VectorStore, "POST", "/vector_stores", json=body, retry_when_sent=False)

    async def newest_vector_stores(self, *, limit: int = 100) -> list[VectorStore]:
        """The organisation's newest vector stores, newest first."""
        params = {"order": "desc", "limit": limit}
        return (await self._client.request_model(Page[VectorStore], "GET", "/vector_stores", params=params)).data

    async def delete_vector_store(self, vector_store_id: str) -> None:
        await self._client.request("DELETE", f"/vector_stores/{path_segment(vector_store_id)}")

    async def add_to_vector_store(self, vector_store_id: str, file_id: str) -> VectorStoreFile:
        path = f"/vector_stores/{path_segment(vector_store_id)}/files"
        return await self._client.request_model(VectorStoreFile, "POST", path, json={"file_id": file_id})

    async def vector_store_file(self, vector_store_id: str, file_id: str) -> VectorStoreFile:
        path = f"/vector_stores/{path_segment(vector_store_id)}/files/{path_segment(file_id)}"
        return await self._client.request_model(VectorStoreFile, "GET", path)

    async def remove_from_vector_store(self, vector_store_id: str, file_id: str) -> None:
        await self._client.request(
            "DELETE", f"/vector_stores/{path_segment(vector_store_id)}/files/{path_segment(file_id)}"
        )

    async def use_vector_store(self, thread_id: str, vector_store_id: str) -> Thread:
        """Make file search on this thread read the vector store (a thread has at most one)."""
        body = {"tool_resources": {"file_search": {"vector_store_ids": [vector_store_id]}}}
        return await self._client.request_model(Thread, "POST", f"/threads/{path_segment(thread_id)}", json=body)

    # ---- audio --------------------------------------------------------------------------------

    async def transcribe(self, *, name: str, data: bytes, mimetype: str, model: str) -> str:
        """``POST /audio/transcriptions``; the file name's extension tells the API the format."""
        transcription = await self._client.request_model(
            Transcription,
            "POST",
            "/audio/transcriptions",
            files={"file": (name, data, mimetype)},
            data={"model": model, "response_format": "json"},
        )
        return transcription.text.strip()
