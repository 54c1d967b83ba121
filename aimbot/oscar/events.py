"""What an OscarClient session reports to the layer above, as frozen dataclasses.

The session layer consumes one ordered stream of these (OscarClient.events()); the union type
lets it match exhaustively, and SessionEnded is always the last item so that a consumer loop
ends by itself instead of waiting on a dead connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class TypingState(IntEnum):
    """MTN event values on the wire (docs/oscar-protocol.md §8)."""

    NONE = 0
    PAUSED = 1
    TYPING = 2


class DisconnectReason(Enum):
    EOF = "eof"  # the server closed the connection (or reset it) without a sign-off frame
    SIGNED_OFF = "signed off"  # the server sent a channel-4 sign-off
    SIGNED_ON_ELSEWHERE = "signed on elsewhere"  # ch-4 with TLV 0x0009 = 1: another login won
    RATE_LIMITED = "rate limited"  # the server ended the session for sending too fast
    TIMEOUT = "timeout"  # nothing arrived within keepalive_interval + read_timeout
    PROTOCOL_ERROR = "protocol error"  # the byte stream stopped making sense
    WRITE_ERROR = "write error"  # the socket refused or stopped taking our data
    CLOSED = "closed"  # we called close()


@dataclass(frozen=True, slots=True)
class IncomingIM:
    sender: str  # display form as the server sent it ("Bob Smith"); normalise before comparing
    text: str  # plain text: tags stripped, entities decoded, <br> -> "\n"
    html: str  # the decoded message as sent (usually HTML)
    cookie: bytes
    auto_response: bool  # an away message: never answer it (docs/oscar-protocol.md §12.4)


@dataclass(frozen=True, slots=True)
class TypingNotification:
    sender: str
    state: TypingState


@dataclass(frozen=True, slots=True)
class IMError:
    """An ICBM error; cookie/recipient identify the IM (or typing event) it refers to, if known.

    Codes (docs/oscar-protocol.md §3): 0x0002/0x0003 rate-limited, 0x0004 recipient not logged on,
    0x000A refused by the client, 0x0010 blocked.
    """

    code: int
    cookie: bytes | None
    recipient: str | None


@dataclass(frozen=True, slots=True)
class HostAck:
    """The server accepted the IM with this cookie (sent only when request_ack=True)."""

    cookie: bytes
    recipient: str


@dataclass(frozen=True, slots=True)
class RateChange:
    """A 01/0A notice: 1 parameters changed, 2 alert, 3 limited, 4 cleared."""

    code: int
    class_id: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """Always the last event of a session (also after a failed connect())."""

    reason: DisconnectReason
    detail: str


Event = IncomingIM | TypingNotification | IMError | HostAck | RateChange | SessionEnded
