"""The files family of the OpenAI double: upload, retrieve, download and delete files."""

from __future__ import annotations

import copy
from typing import Any

from .server import ApiCall, ApiError, BinaryReply, JsonReply, Route, ServerCore, not_found, page


class FilesFamily:
    """Files with their bytes; other families look files up here by id."""

    name = "files"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/files", self._create_file),
            Route.of("GET", "/files", self._list_files),
            Route.of("DELETE", "/files/{file_id}", self._delete_file),
            Route.of("GET", "/files/{file_id}", self._retrieve_file),
            Route.of("GET", "/files/{file_id}/content", self._file_content),
        ]

    def reset(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}

    def store(self, name: str, content: bytes, purpose: str) -> dict[str, Any]:
        """Keep a file as if uploaded (or made by a tool) and return its file object."""
        stored = {
            "id": self._core.new_id("file"),
            "object": "file",
            "bytes": len(content),
            "created_at": self._core.now(),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[stored["id"]] = stored
        self.contents[stored["id"]] = bytes(content)
        return stored

    def get(self, file_id: str) -> dict[str, Any]:
        """The file object, or the API's 404."""
        file = self.files.get(file_id)
        if file is None:
            raise not_found("file", file_id)
        return file

    def _create_file(self, call: ApiCall) -> JsonReply:
        content = call.body.get("file")
        if not isinstance(content, bytes):
            raise ApiError(400, "'file' is a required multipart file field.", param="file")
        name = getattr(content, "filename", "") or call.body.get("filename") or "upload"
        return JsonReply(copy.deepcopy(self.store(name, content, call.body["purpose"])))

    def _list_files(self, call: ApiCall) -> JsonReply:
        purpose = call.query.get("purpose")
        files = [file for file in self.files.values() if purpose is None or file["purpose"] == purpose]
        return JsonReply(page(files, call.query))

    def _retrieve_file(self, call: ApiCall, file_id: str) -> JsonReply:
        return JsonReply(copy.deepcopy(self.get(file_id)))

    def _file_content(self, call: ApiCall, file_id: str) -> BinaryReply:
        self.get(file_id)
        return BinaryReply(self.contents[file_id])

    def _delete_file(self, call: ApiCall, file_id: str) -> JsonReply:
        if self.files.pop(file_id, None) is None:
            raise not_found("file", file_id)
        self.contents.pop(file_id, None)
        return JsonReply({"id": file_id, "object": "file", "deleted": True})
