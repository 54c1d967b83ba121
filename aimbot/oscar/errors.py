"""Typed errors of the OSCAR layer.

The layer above (bot/aim_handler.py) decides between "retry soon", "back off hard" and "give up
and tell the operator" from the exception type and a few attributes alone, so every failure the
protocol layer can see is mapped onto one of these classes. Messages never contain a password.
"""

from __future__ import annotations


class OscarError(Exception):
    """Base class: anything that went wrong talking OSCAR."""


class ProtocolError(OscarError):
    """Bytes that do not follow the protocol (from the server, a client, or a fuzzer)."""


class ConnectError(OscarError):
    """The TCP connection or the sign-on exchange failed for a transport reason."""


class NotConnected(OscarError):
    """A send was attempted while no session is signed on."""


class ScreenNameError(OscarError):
    """A screen name nobody can be sent to: empty, blank, too long, or with control characters."""


class CookieError(OscarError):
    """An ICBM cookie that is not 8 bytes."""


class SendError(OscarError):
    """A send failed for a reason the protocol layer did not foresee (a bug; see the log)."""


class MessageTooLong(OscarError):
    """An IM whose encoded text cannot fit in one SNAC; the caller must split it first."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"IM text is {size} bytes encoded; at most {limit} fit in one message")
        self.size = size
        self.limit = limit


# BUCP 17/03 TLV 0x0008 codes (docs/oscar-protocol.md §4): plain-English reason and whether
# retrying can help.
# Bad credentials and suspensions are permanent until an operator acts; rate limits and server
# trouble go away by themselves, so the session layer retries those with back-off.
_LOGIN_CODES: dict[int, tuple[str, bool]] = {
    0x0001: ("unknown screen name or incorrect password", False),
    0x0002: ("the login service is temporarily unavailable", True),
    0x0004: ("incorrect password", False),
    0x0005: ("incorrect password", False),
    0x0006: ("invalid login (the server could not parse it)", False),
    0x0007: ("invalid account", False),
    0x0008: ("the account has been deleted", False),
    0x0009: ("the account has expired", False),
    0x000C: ("the login service is temporarily unavailable", True),
    0x0011: ("the account is suspended", False),
    0x0014: ("the login service is temporarily unavailable", True),
    0x0018: ("too many logins: connecting too frequently (rate-limited)", True),
    0x0019: ("the account's warning level is too high for now", True),
    0x001C: ("the client version is too old for this server", False),
    0x001D: ("too many logins: rate-limited by the server", True),
    0x0022: ("the account is suspended (age restriction)", False),
}

UNKNOWN_SCREEN_NAME = "unknown screen name"


def login_reason(code: int) -> tuple[str, bool]:
    """(plain-English reason, retryable) for a BUCP login error code."""
    known = _LOGIN_CODES.get(code)
    if known is not None:
        return known
    # An unknown code is most likely server-side trouble; retrying with back-off is safe.
    return (f"the server refused the login (error code 0x{code:04x})", True)


class LoginError(OscarError):
    """The server refused the login; `reason` is plain English, `code` the server's number."""

    def __init__(self, reason: str, *, code: int | None = None, retryable: bool = False) -> None:
        text = reason if code is None else f"{reason} (code 0x{code:04x})"
        super().__init__(f"login refused: {text}")
        self.reason = reason
        self.code = code
        self.retryable = retryable

    @classmethod
    def from_code(cls, code: int, *, at_challenge: bool = False) -> LoginError:
        """Build the error for a 17/03 code; at the challenge step 0x0001 means "no such user"."""
        if at_challenge and code == 0x0001:
            return cls(UNKNOWN_SCREEN_NAME, code=code, retryable=False)
        reason, retryable = login_reason(code)
        return cls(reason, code=code, retryable=retryable)
