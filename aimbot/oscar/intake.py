"""An inbound 04/07 as an IncomingIM, or the reason it is dropped: validated where it enters.

Pure (no I/O), so a property test can drive any sender bytes and any TLVs through exactly the
code the client runs. An IM whose sender nobody could answer (empty, blank, too long, control
characters) is dropped here, never handed to the bot: a reply to it could not be sent, and a
reply that cannot be sent must not be stored and retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimbot.oscar.events import IncomingIM
from aimbot.oscar.imtext import decode_im_text, html_to_plain
from aimbot.oscar.snacs import IcbmIncomingIM
from aimbot.oscar.wire import screen_name_problem

TEXT_CHANNEL = 1


@dataclass(frozen=True, slots=True)
class DroppedIM:
    """An inbound IM that is not passed on; `sender` is as decoded (log it with printable())."""

    sender: str
    reason: str
    routine: bool = False  # not text (file transfer, chat invite): nothing to warn about


def incoming_im(snac: IcbmIncomingIM) -> IncomingIM | DroppedIM:
    """The IncomingIM for a decoded 04/07, or why it is dropped; ProtocolError if malformed."""
    sender = snac.sender.screen_name
    problem = screen_name_problem(sender)
    if problem is not None:
        return DroppedIM(sender, f"its sender's screen name {problem}")
    if snac.channel != TEXT_CHANNEL:
        return DroppedIM(sender, f"a channel-{snac.channel} message (not text)", routine=True)
    message = snac.message()
    if message is None:
        return DroppedIM(sender, "it has no message data")
    markup = "".join(decode_im_text(t.charset, t.payload) for t in message.texts)
    return IncomingIM(
        sender=sender,
        text=html_to_plain(markup),
        html=markup,
        cookie=snac.cookie,
        auto_response=snac.auto_response,
    )
