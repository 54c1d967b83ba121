"""Typed failures of the Dify client.

The core turns each type into one short, friendly IM, so the types say what went wrong in terms a
caller can act on (retry later, forget the conversation, fix the configuration) and never carry
raw HTTP text meant for a chat user. Every message is built by us from parsed fields that the
client has already scrubbed of the API key, so ``str()`` and ``repr()`` are safe to log.
"""

from __future__ import annotations


class DifyError(Exception):
    """Base of every failure the client raises; ``kind`` is a stable label for metrics."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        # A server's (or proxy's) Retry-After, in seconds, when it sent one; informational once
        # the retries have run out.
        self.retry_after = retry_after


class DifyAuthError(DifyError):
    """401/403: the key is wrong, revoked, or the app's API access is off — retrying cannot help."""

    kind = "auth"


class DifyRateLimited(DifyError):
    """429 (or the 400 "Too many requests" variant) that outlasted the retry budget."""

    kind = "rate_limited"


class DifyUnavailable(DifyError):
    """5xx, connection failures or a broken stream that outlasted the retry budget."""

    kind = "unavailable"


class DifyProtocolError(DifyUnavailable):
    """Dify (or something in front of it) answered with a body we cannot understand.

    A subclass of DifyUnavailable because, to the user, it is the same outage; it is not retried,
    since a second attempt would most likely get the same garbage and duplicate the turn.
    """

    kind = "protocol"


class DifyTimeout(DifyError):
    """No byte for longer than the read timeout, or no complete answer within the deadline."""

    kind = "timeout"


class DifyBadRequest(DifyError):
    """A 4xx that retrying cannot fix (bad input, app misconfigured, provider quota, …).

    ``code`` and ``message`` are Dify's own envelope fields, kept for logs and for callers that
    need to tell specific cases apart.
    """

    kind = "bad_request"

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(
            f"Dify rejected the request ({status} {code}): {message}", status=status, code=code
        )
        self.code: str = code
        self.message = message


class DifyStreamError(DifyBadRequest):
    """An ``error`` event inside a stream that had already started with HTTP 200.

    Kept a DifyBadRequest (the contract others code against) but distinguishable, because its
    ``status`` may say 500 — which the circuit breaker counts as server trouble.
    """

    kind = "stream_error"


class ConversationNotFound(DifyError):
    """404 for a conversation id: unknown, deleted, or owned by another ``user``.

    Raised, never retried, by the client: the caller forgets the id and asks again once as a new
    conversation.
    """

    kind = "conversation_not_found"

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"Dify conversation {conversation_id} does not exist", status=404)
        self.conversation_id = conversation_id


class DifyCircuitOpen(DifyError):
    """Dify failed repeatedly, so calls fail fast until the cool-down lets a probe through."""

    kind = "circuit_open"

    def __init__(self, retry_in: float) -> None:
        super().__init__(
            f"Dify circuit is open after repeated failures; next probe in {retry_in:.1f} s"
        )
        self.retry_in = retry_in


class DifyHttpError(Exception):
    """The HTTP reply behind a typed error: the ``__cause__`` that makes tracebacks useful.

    Not a DifyError on purpose — callers catch the typed error, logs show this cause.
    """

    def __init__(self, status: int, code: str, message: str, content_type: str) -> None:
        super().__init__(f"HTTP {status} {code} ({content_type or 'no content type'}): {message}")
        self.status = status
        self.code = code
        self.message = message
        self.content_type = content_type
