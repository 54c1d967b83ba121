"""The OSCAR (AIM) protocol: a sans-IO codec (wire, snacs, imtext, ratelimit) and OscarClient.

Nothing in this package knows about bots; see docs/oscar-protocol.md for the byte layouts.
"""

from aimbot.oscar.client import OscarClient
from aimbot.oscar.errors import (
    ConnectError,
    CookieError,
    LoginError,
    MessageTooLong,
    NotConnected,
    OscarError,
    ProtocolError,
    ScreenNameError,
    SendError,
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
    "CookieError",
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
    "ScreenNameError",
    "SendError",
    "SessionEnded",
    "TypingNotification",
    "TypingState",
]
