"""The models family of the OpenAI double: GET /models and /models/{model}."""

from __future__ import annotations

from typing import Any

from .server import ApiCall, ApiError, JsonReply, Route, ServerCore

MODELS = (
    ("gpt-4o", "system"),
    ("gpt-4o-mini", "system"),
    ("gpt-4.1-mini", "system"),
    ("omni-moderation-latest", "system"),
    ("ft:gpt-4o-mini:acme::abc123", "acme"),
)


class ModelsFamily:
    """A fixed list of models, one of them fine-tuned by an organisation."""

    name = "models"

    def __init__(self, core: ServerCore) -> None:
        self._core = core

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/models", self._list_models),
            Route.of("GET", "/models/{model}", self._retrieve_model),
        ]

    def reset(self) -> None:
        """The model list is fixed: nothing to forget."""

    def _list_models(self, call: ApiCall) -> JsonReply:
        return JsonReply({"object": "list", "data": [_model_object(name, owner) for name, owner in MODELS]})

    def _retrieve_model(self, call: ApiCall, model: str) -> JsonReply:
        owners = dict(MODELS)
        if model not in owners:
            raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return JsonReply(_model_object(model, owners[model]))


def _model_object(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_715_367_049, "owned_by": owner}
