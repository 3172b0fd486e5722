"""The vector stores family of the OpenAI double: stores and the indexing of their files."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .server import ApiCall, JsonReply, Route, ServerCore, not_found, page

if TYPE_CHECKING:
    from .files import FilesFamily


class VectorStoresFamily:
    """Vector stores whose files finish indexing at the first look, or fail as `file_errors` says."""

    name = "vector_stores"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/vector_stores", self._create_vector_store, beta=True),
            Route.of("GET", "/vector_stores", self._list_vector_stores, beta=True),
            Route.of("DELETE", "/vector_stores/{vector_store_id}", self._delete_vector_store, beta=True),
            Route.of("POST", "/vector_stores/{vector_store_id}/files", self._create_vector_store_file, beta=True),
            Route.of(
                "GET", "/vector_stores/{vector_store_id}/files/{file_id}", self._retrieve_vector_store_file, beta=True
            ),
            Route.of(
                "DELETE", "/vector_stores/{vector_store_id}/files/{file_id}", self._delete_vector_store_file, beta=True
            ),
        ]

    def reset(self) -> None:
        self.stores: dict[str, dict[str, Any]] = {}
        self.store_files: dict[str, dict[str, dict[str, Any]]] = {}
        # File name -> last_error code ("invalid_file", ...): adding such a file to a vector store ends `failed`.
        self.file_errors: dict[str, str] = {}

    def get(self, vector_store_id: str) -> dict[str, Any]:
        """The vector store object, or the API's 404."""
        store = self.stores.get(vector_store_id)
        if store is None:
            raise not_found("vector store", vector_store_id)
        return store

    @property
    def _files(self) -> FilesFamily:
        return self._core.family("files")

    def _create_vector_store(self, call: ApiCall) -> JsonReply:
        body = call.body or {}
        file_ids = body.get("file_ids") or []
        now = self._core.now()
        store = {
            "id": self._core.new_id("vs"),
            "object": "vector_store",
            "created_at": now,
            "name": body.get("name") or "",
            "usage_bytes": 0,
            "file_counts": {
                "in_progress": 0,
                "completed": len(file_ids),
                "failed": 0,
                "cancelled": 0,
                "total": len(file_ids),
            },
            "status": "completed",
            "last_active_at": now,
            "metadata": body.get("metadata") or {},
        }
        self.stores[store["id"]] = store
        return JsonReply(copy.deepcopy(store))

    def _list_vector_stores(self, call: ApiCall) -> JsonReply:
        return JsonReply(page(list(self.stores.values()), call.query))

    def _delete_vector_store(self, call: ApiCall, vector_store_id: str) -> JsonReply:
        if self.stores.pop(vector_store_id, None) is None:
            raise not_found("vector store", vector_store_id)
        self.store_files.pop(vector_store_id, None)
        return JsonReply({"id": vector_store_id, "object": "vector_store.deleted", "deleted": True})

    def _create_vector_store_file(self, call: ApiCall, vector_store_id: str) -> JsonReply:
        store = self.get(vector_store_id)
        file = self._files.get(call.body["file_id"])
        files = self.store_files.setdefault(vector_store_id, {})
        if file["id"] not in files:
            files[file["id"]] = {
                "id": file["id"],
                "object": "vector_store.file",
                "usage_bytes": 0,
                "created_at": self._core.now(),
                "vector_store_id": vector_store_id,
                "status": "in_progress",
                "last_error": None,
            }
            self._count_files(store)
        return JsonReply(copy.deepcopy(files[file["id"]]))

    def _retrieve_vector_store_file(self, call: ApiCall, vector_store_id: str, file_id: str) -> JsonReply:
        """Indexing ends at the first look after the file was added: completed, or failed as the test asked."""
        store = self.get(vector_store_id)
        indexed = self.store_files.get(vector_store_id, {}).get(file_id)
        if indexed is None:
            raise not_found("vector store file", file_id)
        if indexed["status"] == "in_progress":
            file = self._files.files.get(file_id, {})
            error_code = self.file_errors.get(file.get("filename", ""))
            if error_code is None:
                indexed.update(status="completed", usage_bytes=file.get("bytes", 0))
            else:
                error = {"code": error_code, "message": "The file could not be parsed."}
                indexed.update(status="failed", last_error=error)
            self._count_files(store)
        return JsonReply(copy.deepcopy(indexed))

    def _delete_vector_store_file(self, call: ApiCall, vector_store_id: str, file_id: str) -> JsonReply:
        store = self.get(vector_store_id)
        if self.store_files.get(vector_store_id, {}).pop(file_id, None) is None:
            raise not_found("vector store file", file_id)
        self._count_files(store)
        return JsonReply({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})

    def _count_files(self, store: dict[str, Any]) -> None:
        statuses = [f["status"] for f in self.store_files.get(store["id"], {}).values()]
        store["file_counts"] = {
            status: statuses.count(status) for status in ("in_progress", "completed", "failed", "cancelled")
        } | {"total": len(statuses)}
