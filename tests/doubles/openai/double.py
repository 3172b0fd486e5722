"""OpenAIDouble: the server core with every API family registered, and what tests script and inspect."""

from __future__ import annotations

import copy
import importlib
import re
from typing import Any

from .script import ScriptedAnswer
from .server import RecordedRequest, ServerCore

# (module, class): one line per family, in routing order.
_FAMILIES = (
    ("models", "ModelsFamily"),
    ("moderations", "ModerationsFamily"),
    ("images", "ImagesFamily"),
    ("audio", "AudioFamily"),
    ("files", "FilesFamily"),
    ("vector_stores", "VectorStoresFamily"),
    ("assistants", "AssistantsFamily"),
    ("responses", "ResponsesFamily"),
    ("responses", "ConversationsFamily"),
    ("responses", "ContainersFamily"),
    ("chat", "ChatFamily"),
    ("embeddings", "EmbeddingsFamily"),
)


class _FamilySetting:
    """A test-facing setting of the double that lives in one of its families (read, mutate or replace it)."""

    def __init__(self, family: str, attribute: str, doc: str) -> None:
        self._family, self._attribute, self.__doc__ = family, attribute, doc

    def __get__(self, double: OpenAIDouble | None, owner: type) -> Any:
        if double is None:
            return self
        return getattr(double.core.family(self._family), self._attribute)

    def __set__(self, double: OpenAIDouble, value: Any) -> None:
        with double.core.lock:
            setattr(double.core.family(self._family), self._attribute, value)


class OpenAIDouble:
    """An OpenAI API double served over HTTP from a background thread; tests script it and inspect its state."""

    def __init__(
        self,
        api_key: str = "sk-test-double",
        *,
        require_query_token: tuple[str, str] | None = None,
        shape: str = "full",
    ) -> None:
        self.core = ServerCore(api_key, require_query_token=require_query_token, shape=shape)
        for module_name, class_name in _FAMILIES:
            module = _family_module(module_name)
            if module is not None:
                self.core.register(getattr(module, class_name)(self.core))
        self.core.reset()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> OpenAIDouble:
        """Serve on 127.0.0.1 (a free port) from a background thread with its own event loop."""
        self.core.start()
        return self

    def stop(self) -> None:
        """Stop serving; open streams are cut."""
        self.core.stop()

    def __enter__(self) -> OpenAIDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What the bot's OPENAI_BASE_URL should be, e.g. http://127.0.0.1:PORT/v1."""
        return self.core.base_url

    def reset(self) -> None:
        """Forget all objects, scripts, faults and recorded traffic; put settings back as constructed."""
        self.core.reset()

    # -- settings -----------------------------------------------------------------------------------

    @property
    def shape(self) -> str:
        """Which API families the server offers (a key of SERVER_SHAPES); the others are unknown URLs."""
        return self.core.shape

    @shape.setter
    def shape(self, shape: str) -> None:
        self.core.shape = shape

    @property
    def api_key(self) -> str:
        return self.core.api_key

    @api_key.setter
    def api_key(self, api_key: str) -> None:
        self.core.api_key = api_key

    @property
    def require_query_token(self) -> tuple[str, str] | None:
        """(name, token): authenticate by this query parameter instead of a bearer key, as gateways do."""
        return self.core.require_query_token

    @require_query_token.setter
    def require_query_token(self, token: tuple[str, str] | None) -> None:
        self.core.require_query_token = token

    @property
    def streaming(self) -> bool:
        """Whether `stream: true` is honoured; off, every API answers as if not asked to stream."""
        return self.core.streaming

    @streaming.setter
    def streaming(self, streaming: bool) -> None:
        self.core.streaming = streaming

    @property
    def cut_stream_after(self) -> int | None:
        """Hang up every stream after this many events (the job still finishes on the server)."""
        return self.core.cut_stream_after

    @cut_stream_after.setter
    def cut_stream_after(self, events: int | None) -> None:
        self.core.cut_stream_after = events

    @property
    def end_streams_after(self) -> int | None:
        """End every stream cleanly after this many events, without its done event (the job still finishes)."""
        return self.core.end_streams_after

    @end_streams_after.setter
    def end_streams_after(self, events: int | None) -> None:
        self.core.end_streams_after = events

    moderation_flags = _FamilySetting(
        "moderations", "flags", "Substring of a text, or of an image's bytes: categories the API flags for it."
    )
    moderation_scores = _FamilySetting(
        "moderations", "scores", "Substring of a text, or of an image's bytes: category scores reported without a flag."
    )
    transcripts = _FamilySetting(
        "audio", "transcripts", 'File name -> what POST /audio/transcriptions hears in it ("Transcript of <name>.").'
    )
    vector_store_file_errors = _FamilySetting(
        "vector_stores", "file_errors", "File name -> last_error code: adding it to a vector store ends `failed`."
    )

    # -- scripting ----------------------------------------------------------------------------------

    def script(self, *answers: ScriptedAnswer) -> None:
        """Queue what the model does in the next model calls (runs, responses, completions), in order."""
        self.core.script(*answers)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        *,
        status: int,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        after_processing: bool = False,
    ) -> None:
        """Answer the next `times` requests matching method and path (regex search) with this error.

        With `after_processing` each is carried out first (message stored, run started, file uploaded) and
        only its answer is the error, as when a gateway times out on an API that did the work.
        """
        self.core.fail_next(
            method,
            path_regex,
            status=status,
            code=code,
            message=message,
            error_type=error_type,
            headers=headers,
            times=times,
            after_processing=after_processing,
        )

    def lose_response_next(self, method: str, path_regex: str, *, after: int = 0) -> None:
        """Carry out the next matching request (after answering `after` of them), then hang up without answering."""
        self.core.lose_response_next(method, path_regex, after=after)

    def add_output_file(self, name: str, content: bytes) -> str:
        """A file a tool made (purpose assistants_output), for a ScriptedAnswer to show; returns its id."""
        with self.core.lock:
            return self.core.family("files").store(name, content, "assistants_output")["id"]

    # -- what the model saw -------------------------------------------------------------------------

    def model_inputs(self, api: str | None = None) -> list[list[tuple[str, str]]]:
        """One entry per model call (of one API if given), oldest first: the (role, text) pairs it saw."""
        return self.core.model_inputs(api)

    def user_texts_seen(self) -> list[str]:
        """The user texts the newest model call saw, oldest first."""
        inputs = self.core.model_inputs()
        return [text for role, text in inputs[-1] if role == "user"] if inputs else []

    @property
    def model_calls(self) -> int:
        return len(self.core.model_inputs())

    # -- traffic ------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.core.requests

    def forget_requests(self) -> None:
        self.core.forget_requests()

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pattern.search(r.path)]

    @property
    def violations(self) -> list[str]:
        return self.core.violations

    def assert_no_violations(self) -> None:
        violations = self.violations
        if violations:
            raise AssertionError("OpenAI API spec violations:\n" + "\n".join(f"- {v}" for v in violations))

    # -- objects --------------------------------------------------------------------------------------

    def files(self) -> list[dict[str, Any]]:
        with self.core.lock:
            return copy.deepcopy(list(self.core.family("files").files.values()))

    def file_content(self, file_id: str) -> bytes:
        with self.core.lock:
            return self.core.family("files").contents[file_id]

    def vector_stores(self) -> list[dict[str, Any]]:
        with self.core.lock:
            return copy.deepcopy(list(self.core.family("vector_stores").stores.values()))

    def vector_store_files(self, vector_store_id: str) -> list[dict[str, Any]]:
        with self.core.lock:
            return copy.deepcopy(list(self.core.family("vector_stores").store_files.get(vector_store_id, {}).values()))

    def assistants(self) -> list[dict[str, Any]]:
        return self.core.family("assistants").assistant_objects()

    def threads(self) -> list[dict[str, Any]]:
        return self.core.family("assistants").thread_objects()

    def thread_messages(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's messages, oldest first."""
        return self.core.family("assistants").thread_messages(thread_id)

    def runs_of(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's runs, oldest first."""
        return self.core.family("assistants").runs_of(thread_id)

    @property
    def submitted_tool_outputs(self) -> list[dict[str, Any]]:
        """Every tool output submitted to a run so far: {"run_id", "tool_call_id", "output"}."""
        return self.core.family("assistants").submitted_tool_outputs()


def _family_module(name: str) -> Any:
    """The family's module, or None while it is not written yet (only a missing module itself is forgiven)."""
    qualified = f"{__package__}.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as missing:
        if missing.name == qualified:
            return None
        raise
