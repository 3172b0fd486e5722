"""Slack's reference shapes: the key structure and JSON types of its samples and Swagger spec, to check output."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, reduce
from pathlib import Path
from typing import Any

SPECS_DIR = Path(__file__).resolve().parents[4] / "shared" / "specs"
SLACK_SAMPLES_DIR = SPECS_DIR / "slack" / "samples"
WEB_API_SWAGGER = SPECS_DIR / "slack" / "web-api" / "slack_web_openapi_v2.json"
EVENT_WRAPPER_SCHEMA = SPECS_DIR / "slack" / "events-api" / "slack_common_event_wrapper_schema.json"


def require_specs() -> None:
    """Skip the calling test module when the shared specs are absent, but fail in CI where they must exist."""
    import pytest

    if SLACK_SAMPLES_DIR.is_dir() and WEB_API_SWAGGER.is_file():
        return
    reason = f"Slack reference specs not found at {SPECS_DIR} (expected beside the checkout)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


ANY_JSON_TYPE = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
# Keys like "C00000000" in a sample are data (a map from channel id to shares), not field names.
SLACK_ID_KEY = re.compile(r"^[A-Z][A-Z0-9]{8,}$")
# Slack echoes what the caller sent under these keys; the samples show some other app's content there,
# so only the container type is checked.
CALLER_CONTENT_KEYS = frozenset({"blocks", "attachments"})

# Fields real Slack sends that the logged samples happen not to contain. They are merged into the
# sample before validation so that every deviation from the samples is listed here, with its reason.
SAMPLE_GAPS: dict[str, Any] = {
    # An IM's conversation object names the other member (docs: conversation object, is_im).
    "api/conversations.info.json": {"channel": {"user": ""}},
    # Thread roots carry their subtype in replies too: assistant_app_thread roots, thread_broadcast replies.
    "api/conversations.replies.json": {"messages": [{"subtype": ""}]},
    # Edited or deleted messages carry the whole message, with its files and thread summary
    # (bolt-python's assistant tests log reply_users in message_changed).
    "events/MessageChangedPayload.json": {
        "event": {
            "message": {"reply_users": [""], "files": [{}]},
            "previous_message": {"reply_users": [""], "files": [{}]},
        }
    },
    # A deleted bot message (someone removed the bot's reply) carries its app_id like any bot message.
    "events/MessageDeletedPayload.json": {
        "event": {"previous_message": {"reply_users": [""], "files": [{}], "app_id": ""}}
    },
    # Updating a thread reply returns the message with its thread fields, as chat.postMessage does.
    "api/chat.update.json": {"message": {"thread_ts": "", "parent_user_id": ""}},
    # A mention with an attachment carries the files like any other message.
    "events/AppMentionPayload.json": {"event": {"files": [{}]}},
    # User messages in an assistant thread carry an action token (docs: AI apps, message.im).
    "events/MessagePayload.json": {"event": {"assistant_thread": {"action_token": ""}}},
    # ... and so do files shared there: a file share is a user message in that thread like any other.
    "events/MessageFileSharePayload.json": {"event": {"assistant_thread": {"action_token": ""}}},
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def _merge_optional(left: Any, right: Any, merge: Callable[[Any, Any], Any]) -> Any:
    # None means "the reference says nothing here", so the other side's knowledge wins.
    if left is None:
        return right
    if right is None:
        return left
    return merge(left, right)


@dataclass(frozen=True)
class Shape:
    """JSON types a value may have; for objects the allowed keys (None: any), for arrays the item shape (None: any)."""

    types: frozenset[str]
    fields: Mapping[str, Shape] | None = None
    items: Shape | None = None

    def merge(self, other: Shape) -> Shape:
        def merge_fields(left: Mapping[str, Shape], right: Mapping[str, Shape]) -> dict[str, Shape]:
            merged = dict(left)
            for key, shape in right.items():
                merged[key] = merged[key].merge(shape) if key in merged else shape
            return merged

        return Shape(
            self.types | other.types,
            _merge_optional(self.fields, other.fields, merge_fields),
            _merge_optional(self.items, other.items, Shape.merge),
        )


def shape_of_sample(sample: Any) -> Shape:
    kind = json_type(sample)
    if kind == "object":
        if not sample or all(SLACK_ID_KEY.match(key) for key in sample):
            return Shape(frozenset({kind}))
        return Shape(frozenset({kind}), {key: shape_of_sample(value) for key, value in sample.items()})
    if kind == "array":
        return Shape(frozenset({kind}), items=reduce(Shape.merge, map(shape_of_sample, sample)) if sample else None)
    return Shape(frozenset({kind}))


def shape_of_schema(schema: Mapping[str, Any], definitions: Mapping[str, Any], depth: int = 0) -> Shape:
    """The Shape a Swagger 2.0 schema allows; deep or recursive references are left open."""
    if depth > 12:
        return Shape(ANY_JSON_TYPE)
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    alternatives = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if alternatives:
        return reduce(Shape.merge, (shape_of_schema(alt, definitions, depth + 1) for alt in alternatives))
    declared = schema.get("type")
    types = frozenset([declared] if isinstance(declared, str) else declared or ANY_JSON_TYPE)
    fields = None
    if "object" in types and schema.get("additionalProperties") is False:
        fields = {
            key: shape_of_schema(sub, definitions, depth + 1) for key, sub in schema.get("properties", {}).items()
        }
    item_schemas = schema.get("items")
    if isinstance(item_schemas, dict):
        item_schemas = [item_schemas]
    items = (
        reduce(Shape.merge, (shape_of_schema(s, definitions, depth + 1) for s in item_schemas))
        if item_schemas
        else None
    )
    return Shape(types, fields, items)


def shape_violations(value: Any, shape: Shape, path: str = "$") -> list[str]:
    """Where value leaves the reference shape: keys the reference lacks and JSON types it does not allow."""
    kind = json_type(value)
    if kind not in shape.types and not (kind == "integer" and "number" in shape.types):
        return [f"{path}: {kind}, the reference has {'/'.join(sorted(shape.types))}"]
    problems: list[str] = []
    if kind == "object" and shape.fields is not None:
        for key, child in value.items():
            reference = shape.fields.get(key)
            if reference is None:
                problems.append(f"{path}.{key}: not in the reference")
            else:
                checked = Shape(reference.types) if key in CALLER_CONTENT_KEYS else reference
                problems += shape_violations(child, checked, f"{path}.{key}")
    if kind == "array" and shape.items is not None:
        for index, item in enumerate(value):
            problems += shape_violations(item, shape.items, f"{path}[{index}]")
    return problems


@cache
def sample_shape(relative_path: str) -> Shape | None:
    """Shape of samples/<relative_path> merged with its SAMPLE_GAPS entry; None when there is no such sample."""
    path = SLACK_SAMPLES_DIR / relative_path
    if not path.is_file():
        return None
    shape = shape_of_sample(json.loads(path.read_text()))
    if relative_path in SAMPLE_GAPS:
        shape = shape.merge(shape_of_sample(SAMPLE_GAPS[relative_path]))
    return shape


@cache
def web_api_swagger() -> dict[str, Any]:
    return json.loads(WEB_API_SWAGGER.read_text())


# Responses of methods newer than both the samples and the 2020 Swagger file, from their reference pages.
DOCUMENTED_RESPONSES: dict[str, Any] = {
    # docs.slack.dev/reference/methods/agents.sessions.setStatus (2026): the example success and error.
    "agents.sessions.setStatus": {
        "ok": True,
        "status": "",
        "agent_status": "",
        "title": "",
        "error": "",
    },
}


@cache
def response_shape(method: str) -> Shape | None:
    """The sample of a method's response, or for methods without one the 2020 Swagger responses."""
    shape = sample_shape(f"api/{method}.json")
    if shape is not None:
        return shape
    if method in DOCUMENTED_RESPONSES:
        return shape_of_sample(DOCUMENTED_RESPONSES[method])
    spec = web_api_swagger()
    operations = spec["paths"].get(f"/{method}", {})
    schemas = [r["schema"] for op in operations.values() for r in op["responses"].values() if "schema" in r]
    if not schemas:
        return None
    return reduce(Shape.merge, (shape_of_schema(s, spec["definitions"]) for s in schemas))


def event_sample_path(event: Mapping[str, Any]) -> str:
    """The samples/events file for an event: AppMentionPayload, MessagePayload, MessageChangedPayload, ..."""
    words = event["type"].split("_")
    if event.get("subtype"):
        words += event["subtype"].removeprefix("message_").split("_")
    return f"events/{''.join(word.capitalize() for word in words)}Payload.json"
