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
    """The models the server has: MODELS (one of them fine-tuned by an organisation) unless a test changes them."""

    name = "models"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/models", self._list_models),
            Route.of("GET", "/models/{model}", self._retrieve_model),
        ]

    def reset(self) -> None:
        # Model id -> owner; a test may add models (those the bot's other settings name) or take some away.
        self.models: dict[str, str] = dict(MODELS)

    def _list_models(self, call: ApiCall) -> JsonReply:
        return JsonReply({"object": "list", "data": [_model_object(n, owner) for n, owner in self.models.items()]})

    def _retrieve_model(self, call: ApiCall, model: str) -> JsonReply:
        owners = self.models
        if model not in owners:
            raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return JsonReply(_model_object(model, owners[model]))


def _model_object(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_715_367_049, "owned_by": owner}
