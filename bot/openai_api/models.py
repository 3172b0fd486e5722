"""Pydantic models of the Assistants API objects the bot reads, named as in the OpenAI spec."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

T = TypeVar("T")

RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"cancelled", "failed", "completed", "incomplete", "expired"})


class APIModel(BaseModel):
    """Base of every API object: unknown fields are kept, so new API fields never break parsing."""

    model_config = ConfigDict(extra="allow")


def _by_type(*known: str) -> Discriminator:
    """Pick a union member by ``type``; a type the API added after this code maps to the "other" member."""

    def tag(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if kind in known else "other"

    return Discriminator(tag)


class Usage(APIModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class FileRef(APIModel):
    file_id: str | None = None


class Annotation(APIModel):
    """A ``file_citation`` or ``file_path`` annotation; the same shape serves messages and deltas."""

    type: str
    index: int | None = None
    text: str | None = None
    start_index: int | None = None
    end_index: int | None = None
    file_citation: FileRef | None = None
    file_path: FileRef | None = None


class Text(APIModel):
    value: str = ""
    annotations: list[Annotation] = []


class ImageFile(APIModel):
    file_id: str | None = None
    detail: str | None = None


class ImageUrl(APIModel):
    url: str | None = None
    detail: str | None = None


class TextContent(APIModel):
    type: Literal["text"] = "text"
    text: Text


class ImageFileContent(APIModel):
    type: Literal["image_file"] = "image_file"
    image_file: ImageFile


class ImageUrlContent(APIModel):
    type: Literal["image_url"] = "image_url"
    image_url: ImageUrl


class RefusalContent(APIModel):
    type: Literal["refusal"] = "refusal"
    refusal: str = ""


class OtherContent(APIModel):
    """A content part of a type this code does not know yet."""

    type: str


MessageContent = Annotated[
    Annotated[TextContent, Tag("text")]
    | Annotated[ImageFileContent, Tag("image_file")]
    | Annotated[ImageUrlContent, Tag("image_url")]
    | Annotated[RefusalContent, Tag("refusal")]
    | Annotated[OtherContent, Tag("other")],
    _by_type("text", "image_file", "image_url", "refusal"),
]


class Assistant(APIModel):
    id: str
    object: str = "assistant"
    created_at: int | None = None
    name: str | None = None
    description: str | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = []
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    response_format: str | dict[str, Any] | None = None


class Thread(APIModel):
    id: str
    object: str = "thread"
    created_at: int | None = None
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class IncompleteDetails(APIModel):
    reason: str | None = None


class Message(APIModel):
    id: str
    object: str = "thread.message"
    created_at: int | None = None
    thread_id: str | None = None
    status: Literal["in_progress", "incomplete", "completed"] | None = None
    incomplete_details: IncompleteDetails | None = None
    completed_at: int | None = None
    incomplete_at: int | None = None
    role: Literal["user", "assistant"]
    content: list[MessageContent] = []
    assistant_id: str | None = None
    run_id: str | None = None
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None

    def text(self) -> str:
        """The message's text parts joined by newlines; images and refusals are left out."""
        return "\n".join(part.text.value for part in self.content if isinstance(part, TextContent))


class FunctionCall(APIModel):
    name: str
    arguments: str = ""


class ToolCall(APIModel):
    """A function call the run waits on (``required_action.submit_tool_outputs.tool_calls``)."""

    id: str
    type: str = "function"
    function: FunctionCall


class ToolOutput(APIModel):
    tool_call_id: str
    output: str


class SubmitToolOutputs(APIModel):
    tool_calls: list[ToolCall] = []


class RequiredAction(APIModel):
    type: str = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputs


class LastError(APIModel):
    code: str | None = None
    message: str = ""


class Run(APIModel):
    id: str
    object: str = "thread.run"
    created_at: int | None = None
    thread_id: str | None = None
    assistant_id: str | None = None
    status: RunStatus
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    expires_at: int | None = None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = []
    metadata: dict[str, str] | None = None
    usage: Usage | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: str | dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change (completed, failed, cancelled, incomplete, expired)."""
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The function calls the run waits on; empty unless the status is ``requires_action``."""
        if self.required_action is None:
            return []
        return self.required_action.submit_tool_outputs.tool_calls


class Page(APIModel, Generic[T]):
    """One page of a cursor-paginated list; pass ``last_id`` as ``after`` to get the next."""

    object: str = "list"
    data: list[T] = []
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class Model(APIModel):
    id: str
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None


class GeneratedImage(APIModel):
    """One generated image: inline (``b64_json``) or, for the DALL·E models by default, a link."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(APIModel):
    created: int
    data: list[GeneratedImage] = []


class ModerationResult(APIModel):
    flagged: bool
    categories: dict[str, bool | None] = {}
    category_scores: dict[str, float] = {}
    category_applied_input_types: dict[str, list[str]] | None = None


class ModerationResponse(APIModel):
    id: str
    model: str
    results: list[ModerationResult] = []

    @property
    def flagged(self) -> bool:
        """True if any input was flagged."""
        return any(result.flagged for result in self.results)
