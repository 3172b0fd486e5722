"""Validates OpenAI API requests, responses and stream events against the official OpenAPI document."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPECS_DIR = Path(__file__).resolve().parents[3] / "shared" / "specs"
OPENAPI_PATH = SPECS_DIR / "openai" / "openapi.yaml"

# The whole document is registered under this URI so that its local "#/components/..." refs resolve.
_DOCUMENT_URI = "https://openapi.invalid/openai/openapi.json"

# Error messages quote the offending instance, which can be a whole run object.
_MAX_MESSAGE_LENGTH = 300

_SCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LIST_KEYWORDS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_SINGLE_KEYWORDS = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_FORM_CONTENT_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def spec_available() -> bool:
    """Whether the shared OpenAI OpenAPI document is present beside the checkout."""
    return OPENAPI_PATH.is_file()


def require_spec() -> None:
    """Skip the calling test when the spec is missing, but fail it on CI where the spec must be present."""
    if spec_available():
        return
    reason = f"OpenAI OpenAPI document not found at {OPENAPI_PATH} (shared specs folder beside the checkout)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class _LoaderWithoutDates(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe YAML loader that keeps date-like scalars as strings, as JSON Schema expects."""


_LoaderWithoutDates.yaml_implicit_resolvers = {
    first_char: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first_char, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_document(path: Path = OPENAPI_PATH) -> dict[str, Any]:
    """Parse the OpenAPI YAML, reusing a JSON copy in the temp dir keyed by the YAML's sha256."""
    raw = path.read_bytes()
    cache_path = Path(tempfile.gettempdir()) / f"openai-openapi-{hashlib.sha256(raw).hexdigest()}.json"
    try:
        return json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    document = yaml.load(raw, Loader=_LoaderWithoutDates)
    # Write then rename so a parallel test process never reads a half-written cache.
    partial_path = cache_path.with_suffix(f".{os.getpid()}.tmp")
    partial_path.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial_path, cache_path)
    return document


def _repair_schema(schema: Any) -> Any:
    """Rewrite one schema (recursively) so Draft 2020-12 accepts what the real API exchanges."""
    if not isinstance(schema, dict):
        return schema
    repaired: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            repaired[key] = {name: _repair_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LIST_KEYWORDS and isinstance(value, list):
            repaired[key] = [_repair_schema(sub) for sub in value]
        elif key in _SCHEMA_SINGLE_KEYWORDS:
            repaired[key] = _repair_schema(value)
        else:
            repaired[key] = value

    # Some oneOf alternatives overlap and the server picks one by discriminator, so a strict
    # oneOf rejects valid bodies; the discriminator itself is dropped because one mapping
    # names a schema that does not exist.
    repaired.pop("discriminator", None)
    if "oneOf" in repaired:
        alternatives = repaired.pop("oneOf")
        if "anyOf" in repaired:
            repaired["allOf"] = [*repaired.get("allOf", []), {"anyOf": alternatives}]
        else:
            repaired["anyOf"] = alternatives

    # A `required` list naming a property the schema does not declare (MCPApprovalResponse requires a
    # "request_id" it never defines, and the API takes no such field): only declared names are required.
    declared = repaired.get("properties")
    if isinstance(declared, dict) and isinstance(repaired.get("required"), list) and "allOf" not in repaired:
        repaired["required"] = [name for name in repaired["required"] if name in declared]

    # OpenAPI 3.0 wrote exclusive bounds as booleans next to minimum/maximum.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if repaired.get(exclusive) is True and bound in repaired:
            repaired[exclusive] = repaired.pop(bound)
        elif repaired.get(exclusive) is False:
            del repaired[exclusive]

    # OpenAPI 3.0 `nullable: true`, either on the schema or on one member of its allOf.
    nullable = repaired.pop("nullable", False) is True or any(
        isinstance(member, dict) and member.get("nullable") is True for member in schema.get("allOf", [])
    )
    if nullable:
        return {"anyOf": [repaired, {"type": "null"}]}
    return repaired


def _repair_operation_schemas(node: Any) -> Any:
    """Repair every schema embedded in OpenAPI objects (parameters, media types, headers)."""
    if isinstance(node, dict):
        return {
            key: _repair_schema(value) if key == "schema" else _repair_operation_schemas(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_repair_operation_schemas(item) for item in node]
    return node


def _allow_null_list_cursors(schema: dict[str, Any]) -> dict[str, Any]:
    """Let list responses carry null first_id/last_id: the API sends null for an empty page."""
    properties = schema.get("properties", {})
    if not {"data", "first_id", "last_id", "has_more"} <= properties.keys():
        return schema
    cursors = {name: {"anyOf": [properties[name], {"type": "null"}]} for name in ("first_id", "last_id")}
    return {**schema, "properties": {**properties, **cursors}}


def repair_document(document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the OpenAPI document whose schemas validate under JSON Schema Draft 2020-12."""
    repaired = _repair_operation_schemas({key: value for key, value in document.items() if key != "components"})
    components = document.get("components", {})
    schemas = {
        name: _allow_null_list_cursors(_repair_schema(schema)) for name, schema in components.get("schemas", {}).items()
    }
    other_components = _repair_operation_schemas({key: value for key, value in components.items() if key != "schemas"})
    repaired["components"] = {**other_components, "schemas": schemas}
    return repaired


def _pointer(*segments: str | int) -> str:
    """JSON pointer (RFC 6901) to a location in the document."""
    return "".join("/" + str(segment).replace("~", "~0").replace("/", "~1") for segment in segments)


def _template_regex(template: str) -> re.Pattern[str]:
    """Regex matching concrete paths of an OpenAPI path template such as /threads/{thread_id}."""
    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
    return re.compile(pattern)


def _rules_out_alternative(error: ValidationError) -> bool:
    """Whether this failure shows the instance was never meant to be that alternative (wrong type or tag)."""
    if error.validator == "type" and not error.relative_path:
        return True
    tag_mismatch = error.validator in ("enum", "const") and len(error.relative_path) == 1
    return tag_mismatch and error.relative_path[0] in ("type", "object", "role")


def _most_specific(error: ValidationError) -> ValidationError:
    """Descend through anyOf failures into the one alternative the instance was evidently meant to be."""
    while error.context:
        alternatives: dict[Any, list[ValidationError]] = {}
        for failure in error.context:
            alternatives.setdefault(failure.relative_schema_path[0], []).append(failure)
        plausible = [failures for failures in alternatives.values() if not any(map(_rules_out_alternative, failures))]
        if len(plausible) != 1:
            break
        error = best_match(plausible[0]) or error
    return error


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_LENGTH else text[: _MAX_MESSAGE_LENGTH - 3] + "..."


class OpenAPIValidator:
    """Checks traffic against the operations and schemas of one (repaired) OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = repair_document(document)
        self._registry = Registry().with_resource(_DOCUMENT_URI, Resource(self._document, DRAFT202012))
        self._validators: dict[str, Draft202012Validator] = {}
        self._validators_lock = threading.Lock()
        servers = self._document.get("servers") or [{"url": ""}]
        self._base_path = urlsplit(servers[0]["url"]).path.rstrip("/")
        # Literal segments win over templated ones: /threads/runs before /threads/{thread_id}.
        templates = sorted(self._document["paths"], key=lambda template: template.count("{"))
        self._path_patterns = [(template, _template_regex(template)) for template in templates]
        self._stream_event_data = self._stream_event_data_pointers()
        self._response_stream_events = self._response_stream_event_pointers()

    # -- public API ---------------------------------------------------------------------------

    def validate_request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any | None = None,
        content_type: str | None = None,
    ) -> list[str]:
        """Problems with a request: unknown operation, bad query parameters, or a body off the schema."""
        found = self._find_operation(method, path)
        where = f"request {method.upper()} {path}"
        if found is None:
            return [f"{where}: no such operation in the OpenAPI document"]
        operation_pointer, operation = found
        errors = self._query_errors(where, operation_pointer, operation, query or {})
        errors += self._request_body_errors(where, operation_pointer, operation, body, content_type)
        return errors

    def validate_response(self, method: str, path: str, *, status: int, body: Any) -> list[str]:
        """Problems with a JSON response body for the given operation and status code."""
        found = self._find_operation(method, path)
        where = f"response {status} to {method.upper()} {path}"
        if found is None:
            return [f"{where}: no such operation in the OpenAPI document"]
        operation_pointer, operation = found
        responses = operation.get("responses", {})
        status_key = next(
            (key for key in (str(status), f"{status // 100}XX", "default") if key in responses),
            None,
        )
        if status_key is None:
            if status >= 400:
                # The document declares few error statuses, but every API error has this shape.
                return self._errors(where, _pointer("components", "schemas", "ErrorResponse"), body)
            return [f"{where}: status {status} is not declared for this operation"]
        response, response_pointer = self._dereference(
            responses[status_key], operation_pointer + _pointer("responses", status_key)
        )
        content = response.get("content", {})
        if "application/json" not in content:
            return [] if body is None else [f"{where}: the document declares no JSON body for this status"]
        return self._errors(where, response_pointer + _pointer("content", "application/json", "schema"), body)

    def validate_stream_event(
        self, event: str | None, data: Any, *, api: Literal["assistants", "responses", "chat"] = "assistants"
    ) -> list[str]:
        """Problems with one SSE event of an Assistants run, a response or a chat completion (None: no event line)."""
        if api == "responses":
            return self._response_stream_event_errors(event, data)
        if api == "chat":
            return self._chat_chunk_errors(event, data)
        where = f"stream event {event}"
        data_pointer = self._stream_event_data.get(event or "")
        if data_pointer is None:
            return [f"{where}: not an event of AssistantStreamEvent"]
        return self._errors(where, data_pointer, data)

    def _response_stream_event_errors(self, event: str | None, data: Any) -> list[str]:
        """A Responses event names its ResponseStreamEvent alternative twice: `event:` line and data "type"."""
        event_type = data.get("type") if isinstance(data, dict) else None
        where = f"response stream event {event_type or event}"
        schema_pointer = self._response_stream_events.get(event_type or "")
        if schema_pointer is None:
            return [f"{where}: data type {event_type!r} is not an event of ResponseStreamEvent"]
        problems = [] if event == event_type else [f"{where}: the event line says {event!r}"]
        return problems + self._errors(where, schema_pointer, data)

    def _chat_chunk_errors(self, event: str | None, data: Any) -> list[str]:
        """Chat chunks are data-only events ending with a literal [DONE]."""
        where = "chat completion chunk"
        problems = [] if event is None else [f"{where}: chunks carry no event line, got {event!r}"]
        if data == "[DONE]":
            return problems
        chunk_pointer = _pointer("components", "schemas", "CreateChatCompletionStreamResponse")
        return problems + self._errors(where, chunk_pointer, data)

    # -- operations -----------------------------------------------------------------------------

    def _find_operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        if self._base_path and (path == self._base_path or path.startswith(self._base_path + "/")):
            path = path[len(self._base_path) :]
        for template, regex in self._path_patterns:
            path_item = self._document["paths"][template]
            if regex.fullmatch(path) and method.lower() in path_item:
                return _pointer("paths", template, method.lower()), path_item[method.lower()]
        return None

    def _dereference(self, node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follow OpenAPI-level $refs (responses, parameters, request bodies), tracking the pointer."""
        while "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
            node = self._resolve_pointer(pointer)
        return node, pointer

    def _resolve_pointer(self, pointer: str) -> Any:
        node: Any = self._document
        for segment in pointer.lstrip("/").split("/"):
            segment = segment.replace("~1", "/").replace("~0", "~")
            node = node[int(segment)] if isinstance(node, list) else node[segment]
        return node

    def _query_errors(
        self, where: str, operation_pointer: str, operation: dict[str, Any], query: dict[str, Any]
    ) -> list[str]:
        path_item_pointer = operation_pointer.rsplit("/", 1)[0]
        path_item = self._resolve_pointer(path_item_pointer)
        declared = [
            self._dereference(parameter, f"{owner}/parameters/{index}")
            for owner, owner_node in ((path_item_pointer, path_item), (operation_pointer, operation))
            for index, parameter in enumerate(owner_node.get("parameters", []))
        ]
        errors: list[str] = []
        for parameter, parameter_pointer in declared:
            if parameter.get("in") != "query":
                continue
            name = parameter["name"]
            if name not in query:
                if parameter.get("required"):
                    errors.append(f"{where}: query parameter {name!r} is required")
                continue
            schema_pointer = parameter_pointer + _pointer("schema")
            value = self._coerce_text(query[name], parameter.get("schema", {}))
            errors += self._errors(f"{where} query parameter {name!r}", schema_pointer, value)
        return errors

    def _request_body_errors(
        self,
        where: str,
        operation_pointer: str,
        operation: dict[str, Any],
        body: Any,
        content_type: str | None,
    ) -> list[str]:
        if "requestBody" not in operation:
            # Clients often send `{}` to body-less POSTs such as .../cancel; the API ignores it.
            return [] if body in (None, {}) else [f"{where}: this operation takes no request body"]
        request_body, request_body_pointer = self._dereference(
            operation["requestBody"], operation_pointer + _pointer("requestBody")
        )
        if body is None:
            return [f"{where}: a request body is required"] if request_body.get("required") else []
        content = request_body.get("content", {})
        media_type = (content_type or "application/json").split(";", 1)[0].strip().lower()
        if media_type not in content:
            return [f"{where}: content type {media_type!r} not accepted (expected one of {sorted(content)})"]
        schema_pointer = request_body_pointer + _pointer("content", media_type, "schema")
        if media_type in _FORM_CONTENT_TYPES:
            body = self._coerce_form_fields(body, self._resolve_pointer(schema_pointer))
        return self._errors(f"{where} body", schema_pointer, body)

    # -- form and query coercion ----------------------------------------------------------------

    def _schema_view(self, schema: Any) -> dict[str, Any]:
        """A schema with its $ref (if any) followed, for reading types and properties."""
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self._resolve_pointer(schema["$ref"].removeprefix("#"))
        return schema if isinstance(schema, dict) else {}

    def _declared_types(self, schema: Any) -> set[str]:
        schema = self._schema_view(schema)
        declared = schema.get("type", [])
        types = {declared} if isinstance(declared, str) else set(declared)
        for keyword in ("anyOf", "allOf"):
            for member in schema.get(keyword, []):
                types |= self._declared_types(member)
        return types

    def _coerce_text(self, value: Any, schema: Any) -> Any:
        """Turn query-string or form text into the JSON type the schema declares, when it parses as one."""
        types = self._declared_types(schema)
        if "array" in types:
            items = self._schema_view(schema).get("items", {})
            values = value if isinstance(value, list) else [value]
            return [self._coerce_text(item, items) for item in values]
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        matches = {
            "integer": isinstance(parsed, int) and not isinstance(parsed, bool),
            "number": isinstance(parsed, (int, float)) and not isinstance(parsed, bool),
            "boolean": isinstance(parsed, bool),
        }
        return parsed if any(matches.get(declared, False) for declared in types) else value

    def _coerce_form_fields(self, fields: Any, schema: Any) -> Any:
        """Form fields arrive as text or file bytes; map them onto the JSON shape of the schema."""
        if not isinstance(fields, dict):
            return fields
        properties = self._schema_view(schema).get("properties", {})
        coerced: dict[str, Any] = {}
        for raw_name, value in fields.items():
            # Arrays are sent as repeated `name[]` fields.
            name = raw_name.removesuffix("[]")
            if isinstance(value, (bytes, bytearray)):
                # A file part: the schema says `type: string, format: binary`.
                coerced[name] = "<binary>"
                continue
            if raw_name != name:
                value = [*coerced.get(name, []), *(value if isinstance(value, list) else [value])]
            coerced[name] = self._coerce_text(value, properties.get(name, {})) if name in properties else value
        return coerced

    # -- schema validation ----------------------------------------------------------------------

    def _errors(self, where: str, schema_pointer: str, instance: Any) -> list[str]:
        validator = self._validator(schema_pointer)
        return [self._describe(where, error) for error in validator.iter_errors(instance)]

    def _validator(self, schema_pointer: str) -> Draft202012Validator:
        with self._validators_lock:
            validator = self._validators.get(schema_pointer)
            if validator is None:
                reference = f"{_DOCUMENT_URI}#{quote(schema_pointer, safe='/~')}"
                validator = Draft202012Validator({"$ref": reference}, registry=self._registry)
                self._validators[schema_pointer] = validator
            return validator

    @staticmethod
    def _describe(where: str, error: ValidationError) -> str:
        specific = _most_specific(error)
        return f"{where}: at {specific.json_path}: {_truncate(specific.message)}"

    # -- stream events --------------------------------------------------------------------------

    def _stream_event_data_pointers(self) -> dict[str, str]:
        """Map each AssistantStreamEvent name to the pointer of its `data` schema."""
        pointers: dict[str, str] = {}
        pending = [_pointer("components", "schemas", "AssistantStreamEvent")]
        while pending:
            pointer = pending.pop()
            schema, pointer = self._dereference(self._resolve_pointer(pointer), pointer)
            alternatives = schema.get("anyOf", [])
            pending += [pointer + _pointer("anyOf", index) for index in range(len(alternatives))]
            event_names = schema.get("properties", {}).get("event", {}).get("enum", [])
            for event_name in event_names:
                pointers[event_name] = pointer + _pointer("properties", "data")
        return pointers

    def _response_stream_event_pointers(self) -> dict[str, str]:
        """Map each ResponseStreamEvent "type" to the pointer of the alternative that describes it."""
        union_pointer = _pointer("components", "schemas", "ResponseStreamEvent")
        pointers: dict[str, str] = {}
        for index, alternative in enumerate(self._resolve_pointer(union_pointer).get("anyOf", [])):
            schema, pointer = self._dereference(alternative, union_pointer + _pointer("anyOf", index))
            type_schema = schema.get("properties", {}).get("type", {})
            for event_type in type_schema.get("enum", [type_schema.get("const")]):
                if event_type:
                    pointers[event_type] = pointer
        return pointers


_validator_lock = threading.Lock()
_validator_instance: OpenAPIValidator | None = None


def get_validator() -> OpenAPIValidator:
    """The process-wide validator over the shared OpenAI OpenAPI document (built once)."""
    global _validator_instance
    with _validator_lock:
        if _validator_instance is None:
            if not spec_available():
                raise FileNotFoundError(f"OpenAI OpenAPI document not found at {OPENAPI_PATH}")
            _validator_instance = OpenAPIValidator(load_document())
        return _validator_instance
