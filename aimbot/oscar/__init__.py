"""The OSCAR (AIM) protocol: a sans-IO codec (wire, snacs, imtext, ratelimit) and OscarClient.

Nothing in this package knows about bots; see docs/oscar-protocol.md for the byte layouts.
"""

from aimbot.oscar.client import OscarClient
from aimbot.oscar.errors import (
    ConnectError,
    LoginError,
    MessageTooLong,
    NotConnected,
    OscarError,
    ProtocolError,
)
from aimbot.oscar.events import (
    DisconnectReason,
    Event,
    HostAck,
    IMError,
    IncomingIM,
    RateChange,
    SessionEnded,
    TypingNotification,
    TypingState,
)
from aimbot.oscar.ratelimit import RateClass

__all__ = [
    "ConnectError",
    "DisconnectReason",
    "Event",
    "HostAck",
    "IMError",
    "IncomingIM",
    "LoginError",
    "MessageTooLong",
    "NotConnected",
    "OscarClient",
    "OscarError",
    "ProtocolError",
    "RateChange",
    "RateClass",
    "SessionEnded",
    "TypingNotification",
    "TypingState",
]
