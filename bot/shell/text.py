"""Text for the terminal: whatever the model, a file name or a person wrote, without the bytes that steer it."""

from __future__ import annotations

import re

from rich.emoji import Emoji

# C0 and C1 control characters (ESC among them) except newline and tab: text that carries them could move
# the cursor, rewrite the screen or retitle the window.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    return CONTROL_CHARACTERS.sub("", text)


def notice_text(text: str) -> str:
    """A notice of the pipeline's (written for chat, with :emoji: codes) as plain terminal text."""
    return Emoji.replace(printable(text))
