"""What the devserver says as the server itself: notice IMs from the system screen name, and the
request id of SNACs no client asked for. Both as Open OSCAR Server sends them, since the bot
must recognise them there."""

from __future__ import annotations

from aimbot.oscar.snacs import (
    TLV_MESSAGE_DATA,
    IcbmIncomingIM,
    MessageData,
    TextFragment,
    UserInfo,
)
from aimbot.oscar.wire import TlvBlock

SERVER_REQUEST_ID = 0x80000000  # OOS: SNACs the server originates
STATUS_INVISIBLE = 0x0100  # 01/1E status bit: watchers see the user leave
SYSTEM_SENDER = "OOS System Msg"
MULTI_LOGIN_NOTICE = (
    "Your screen name ({name}) is now signed into the aimbot devserver in {count} locations."
)
NOTICE_COOKIE = bytes(8)
CHARSET_ASCII = 0x0000


def system_message(text: str) -> IcbmIncomingIM:
    """A channel-1 IM from the system sender: zero cookie, a user info without TLVs, and only
    the message TLV (OOS's notices look exactly like this)."""
    data = MessageData((TextFragment(CHARSET_ASCII, 0, text.encode("ascii", errors="replace")),))
    return IcbmIncomingIM(
        NOTICE_COOKIE,
        1,
        UserInfo(SYSTEM_SENDER),
        TlvBlock.of((TLV_MESSAGE_DATA, data.encode())),
    )
