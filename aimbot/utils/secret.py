"""Secret strings that cannot leak by accident: every way of printing one prints a mask.

Used for the AIM password and the Dify key from the moment they are read until the one place
that needs the raw value (the MD5 login hash, the Authorization header) calls `.get()`.
"""

from __future__ import annotations

import hmac
import re
from typing import Final

MASK: Final = "********"

# "scheme://user:password@host…": everything of the authority up to its last "@" (as urlsplit
# reads it), also without a scheme. The password may itself contain "@" or ":".
_URL_USERINFO: Final = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?([^/?#]*@)")


def url_has_credentials(url: str) -> bool:
    return _URL_USERINFO.match(url) is not None


def mask_url_credentials(url: str) -> str:
    """The URL with any user:password@ replaced by the mask: credentials are a secret."""
    return _URL_USERINFO.sub(lambda m: (m.group(1) or "") + MASK + "@", url, count=1)


class Secret:
    """A secret string that prints as a mask; `.get()` is the one way to read it.

    Equality is constant-time so comparing a key never leaks its prefix through timing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def get(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __format__(self, format_spec: str) -> str:
        return format(MASK, format_spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other_value = other._value
        elif isinstance(other, str):
            other_value = other
        else:
            return NotImplemented
        # surrogatepass: values from os.environ may carry undecodable bytes as lone surrogates.
        return hmac.compare_digest(
            self._value.encode("utf-8", "surrogatepass"),
            other_value.encode("utf-8", "surrogatepass"),
        )

    def __hash__(self) -> int:
        return hash(self._value)
