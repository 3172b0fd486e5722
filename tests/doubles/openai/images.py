"""The images family of the OpenAI double: POST /images/generations, as links or inline."""

from __future__ import annotations

import base64
import secrets

from .server import ApiCall, ApiError, JsonReply, Route, ServerCore

# A valid 1x1 PNG: what every generated image looks like here.
GENERATED_IMAGE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class ImagesFamily:
    """Generates GENERATED_IMAGE_PNG; DALL·E links to it at a keyless URL like the API's CDN."""

    name = "images"

    def __init__(self, core: ServerCore) -> None:
        self._core = core

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/images/generations", self._generate_image)]

    def reset(self) -> None:
        """Generated images live in the core's downloads, which the core forgets itself."""

    def _generate_image(self, call: ApiCall) -> JsonReply:
        if not call.body.get("prompt"):  # refused before anything is drawn, as the API does (doctor's probe)
            raise ApiError(
                400,
                "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string "
                "instead.",
                param="prompt",
                code="empty_string",
            )
        model = call.body.get("model") or "dall-e-2"
        # The GPT image models always answer inline; DALL·E links to the image unless asked for b64_json.
        if model.startswith("dall-e") and call.body.get("response_format", "url") == "url":
            data = {"url": self._core.publish_download(f"img-{secrets.token_hex(8)}.png", GENERATED_IMAGE_PNG)}
        else:
            data = {"b64_json": base64.b64encode(GENERATED_IMAGE_PNG).decode()}
        return JsonReply({"created": self._core.now(), "data": [data]})
