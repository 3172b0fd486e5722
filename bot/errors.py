"""One exception tree for the bot, organised by what the caller can do about each error.

    BotError
    ├── ConfigurationError        a setting is missing or wrong: fix the environment
    ├── APIError                  the model API failed us
    │   ├── APIConnectionError    no usable answer (connect/read failure; see request_sent)
    │   │   └── APITimeoutError
    │   ├── ContentTooLarge       a file the API offers is larger than the bot reads (nothing past the cap is read)
    │   └── APIStatusError        the API answered 4xx/5xx (status, code, message, request id)
    │       ├── BadRequestError           400: our request was wrong for this state
    │       ├── AuthenticationError       401/403: the key or token is wrong
    │       ├── NotFoundError             404: the object is gone
    │       ├── ConflictError             409
    │       ├── RateLimitError            429: retried, then raised
    │       │   └── InsufficientQuotaError  429 insufficient_quota: never retried
    │       └── ServerError               5xx: retried, then raised
    ├── StoreError                the database failed us
    ├── DeliveryError             the chat platform refused our reply (channel gone, not in it)
    ├── PlatformUnavailable       the chat platform failed for now (rate limited, its own error): try the turn later
    ├── ConversationBusy          an answer is being written there now; try the command again later
    ├── ProfileNotFound           no assistant profile has that id on this backend
    ├── FileRefused               a shared file cannot be used (too big, wrong type, not downloadable)
    └── AnswerWithheld            an answer was stopped before people saw it (e.g. moderation)

Foreign exceptions (httpx, SQLAlchemy) are translated into these once, at the boundary that
calls them, with ``raise ... from exc``. No message here ever carries a secret.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigurationError(BotError):
    """A setting is missing or invalid; the message names the variable, never its value."""


class StoreError(BotError):
    """The database could not do what was asked."""


class APIError(BotError):
    """The model API (OpenAI or a compatible server) failed."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message


class APIConnectionError(APIError):
    """The API could not be reached or did not answer.

    ``request_sent`` says the request may have reached the API (the answer was lost, or for a
    request that must not be sent twice, an error status that can follow the work being done: 408,
    409, 5xx): the caller must check whether it took effect before sending it again.
    """

    def __init__(self, message: str, *, request_id: str | None = None, request_sent: bool = False) -> None:
        super().__init__(message, request_id=request_id)
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """The API did not answer within our timeout."""


class ContentTooLarge(APIError):
    """A file the API offers (one the assistant made) is larger than the bot reads; reading stopped at the cap."""


class APIStatusError(APIError):
    """The API answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status_code = status_code
        self.code = code
        self.error_type = error_type

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {super().__str__()}"


class BadRequestError(APIStatusError):
    """400: the request does not fit the API or the object's current state."""


class AuthenticationError(APIStatusError):
    """401 or 403: the credentials were refused."""


class NotFoundError(APIStatusError):
    """404: the object does not exist (any more)."""


class ConflictError(APIStatusError):
    """409: the object changed under us."""


class RateLimitError(APIStatusError):
    """429: too many requests."""


class InsufficientQuotaError(RateLimitError):
    """429 with code insufficient_quota: waiting will not help."""


class ServerError(APIStatusError):
    """5xx: the API failed on its side."""


class DeliveryError(BotError):
    """The chat platform would not take our reply; retrying the same call will not help."""


class PlatformUnavailable(BotError):
    """The chat platform failed for now, past its client's own retries (rate limited, down, unreachable).

    The answer's turns are tried again later, as after a crash; they do not end FAILED for it.
    """


class FileRefused(BotError):
    """A shared file cannot be used; the message is a short reason for the person who shared it."""


class ConversationBusy(BotError):
    """A conversation cannot be changed while an answer is being written in it; trying later helps."""


class AnswerWithheld(BotError):
    """An answer was stopped before people saw it; the run behind it must be cancelled."""


class ProfileNotFound(BotError):
    """No assistant profile has this id on the backend in use."""
