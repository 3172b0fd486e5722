"""`/imagine`: moderate the prompt, then generate one image with the configured model and size."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from bot.conversations.moderation import Moderator
from bot.errors import APIError
from bot.openai_api.client import OpenAIClient
from bot.store.moderation_log import Flag, ModerationLog

log = logging.getLogger(__name__)

# Slack takes files up to 1 GB; a generated image is a few MB, so anything far larger is not one.
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_PROMPT_CHARS = 4000
PROMPT_FLAGGED = ":no_entry: I didn't make this image: content moderation flagged the prompt for {categories}."
PROMPT_UNCHECKED = (
    ":warning: I couldn't check your prompt with content moderation just now, so I didn't make the image. "
    "Please try again in a moment."
)


@dataclass(frozen=True)
class Picture:
    content: bytes
    filename: str


class ImageMaker:
    """Generates images; the prompt is moderated first and never reaches the image model if refused."""

    def __init__(
        self, client: OpenAIClient, *, moderator: Moderator, moderation_log: ModerationLog, model: str, size: str
    ) -> None:
        self._client = client
        self._moderator = moderator
        self._moderation_log = moderation_log
        self._model = model
        self._size = size

    async def refusal(self, prompt: str, *, team_id: str, channel_id: str, user_id: str) -> str | None:
        """None when the prompt may go to the image model, else plain words why not (MODERATION=off skips this)."""
        policy = self._moderator.policy
        if policy.mode == "off":
            return None
        verdict = await self._moderator.check(prompt)
        if not policy.refuses(verdict):
            return None
        if not verdict.flagged:
            return PROMPT_UNCHECKED
        log.info(
            "image prompt from %s in %s/%s refused: %s", user_id, team_id, channel_id, ", ".join(verdict.categories)
        )
        await self._moderation_log.record(
            Flag(
                team_id=team_id,
                channel_id=channel_id,
                user_id=user_id,
                direction="input",
                source="prompt",
                categories=verdict.categories,
                top_scores=verdict.top_scores,
                flagged_text=prompt if policy.keep_text else None,
            )
        )
        return PROMPT_FLAGGED.format(categories=verdict.in_plain_words())

    async def generate(self, prompt: str) -> Picture:
        """One image for an allowed prompt; inline (b64_json) or downloaded from the link the API gives."""
        answer = await self._client.generate_image(prompt=prompt, model=self._model, size=self._size)
        if not answer.data:
            raise APIError("the image API answered without an image")
        image = answer.data[0]
        if image.b64_json:
            try:
                content = base64.b64decode(image.b64_json, validate=True)
            except binascii.Error as exc:
                raise APIError("the image API answered with malformed base64 data") from exc
        elif image.url:
            content = await self._client.download(image.url, max_bytes=MAX_IMAGE_BYTES)
        else:
            raise APIError("the image API answered with neither image data nor a link")
        return Picture(content=content, filename="imagine.png")
