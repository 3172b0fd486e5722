"""Read Slack message text: find and remove mentions, and turn Slack markup into plain text."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["mentioned_user_ids", "strip_mention", "to_plain_text"]

_USER_MENTION = re.compile(r"<@(?P<user_id>[A-Za-z0-9]+)(?:\|[^<>]*)?>")
# What follows a removed mention: "<@BOT>: question" and "hi <@BOT>, question" keep no gap.
_MENTION_TAIL = re.compile(r"(?:[ \t]*(?P<punctuation>[,:]))?[ \t]*")
_SENTENCE_PUNCTUATION = frozenset(".;!?")
# Slack escapes every literal < and >, so these only ever delimit mentions, channels and links.
_MARKUP = re.compile(r"<(?P<entity>[@#!][^<>]*|[A-Za-z][A-Za-z0-9+.-]*:[^<>]*)>|&(?P<escaped>amp|lt|gt);")
_ESCAPED = re.compile(r"&(amp|lt|gt);")
_UNESCAPED = {"amp": "&", "lt": "<", "gt": ">"}
_BROADCASTS = frozenset({"here", "channel", "everyone"})
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?://)?")


def strip_mention(text: str, user_id: str) -> str:
    """The text without mentions of `user_id` (usually the bot), spaced as if it never had them."""
    pieces: list[str] = []
    position = 0
    for mention in _USER_MENTION.finditer(text):
        if mention["user_id"] != user_id:
            continue
        pieces.append(text[position : mention.start()].rstrip(" \t"))
        tail = _MENTION_TAIL.match(text, mention.end())
        assert tail is not None  # the pattern matches the empty string too, so it matches everywhere
        position = tail.end()
        punctuation = tail["punctuation"] or ""
        written = "".join(pieces)
        at_line_start = not written or written.endswith("\n")
        at_line_end = position == len(text) or text[position] == "\n"
        if at_line_start:
            continue
        if at_line_end:
            pieces.append(punctuation)
        elif punctuation:
            pieces.append(f"{punctuation} ")
        elif text[position] not in _SENTENCE_PUNCTUATION:
            pieces.append(" ")
    pieces.append(text[position:])
    return "".join(pieces).strip()


def mentioned_user_ids(text: str) -> list[str]:
    """The users mentioned in Slack message text, in order of first mention."""
    return list(dict.fromkeys(match["user_id"] for match in _USER_MENTION.finditer(text)))


def to_plain_text(text: str, *, user_names: Mapping[str, str]) -> str:
    """Slack message text as a person reads it: names instead of ids, links with their address."""

    # One pass over entities and escapes alike, so that names from user_names are never unescaped.
    def plain(match: re.Match[str]) -> str:
        if match["escaped"]:
            return _UNESCAPED[match["escaped"]]
        target, _, label = _unescape(match["entity"]).partition("|")
        if target.startswith("@"):
            user_id = target[1:]
            return f"@{user_names.get(user_id) or label or user_id}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            return _special_mention(target[1:], label)
        return _link(target, label)

    return _MARKUP.sub(plain, text)


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda match: _UNESCAPED[match[1]], text)


def _special_mention(command: str, label: str) -> str:
    """<!here>, <!subteam^S123|@team>, <!date^...|fallback> and the like."""
    name, _, argument = command.partition("^")
    if name in _BROADCASTS:
        return f"@{name}"
    if label:
        return label
    return f"@{argument}" if name == "subteam" else f"@{name}"


def _link(url: str, label: str) -> str:
    if url.startswith("mailto:"):
        address = url.removeprefix("mailto:")
        return address if not label or label == address else f"{label} ({address})"
    # Slack writes a typed "example.com" as <http://example.com|example.com>: one address, not two.
    if not label or label == url or label.rstrip("/") == _URL_SCHEME.sub("", url).rstrip("/"):
        return url
    return f"{label} ({url})"
