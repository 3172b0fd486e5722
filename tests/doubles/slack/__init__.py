"""A Slack Web API test double served over real HTTP, plus the Events API envelopes Slack would send.

The server core is in server.py; each Web API area (chat, chat_stream, conversations, users, files,
assistant, reactions, views) registers its methods with @web_api in its own module, imported here.
"""

from . import (  # noqa: F401  (they register)
    assistant,
    chat,
    chat_stream,
    conversations,
    files,
    membership,
    reactions,
    users,
    views,
)
from .records import HumanPost, RecordedCall, ResponseUrlPost
from .server import DEFAULT_APP_ID, DEFAULT_VERIFICATION_TOKEN, SlackDouble

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_VERIFICATION_TOKEN",
    "HumanPost",
    "RecordedCall",
    "ResponseUrlPost",
    "SlackDouble",
]
