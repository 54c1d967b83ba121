"""BOS sign-on as a sans-IO state machine: frames in, frames to send out, no sockets.

Some OSCAR servers read only the first frame of each read during sign-on and drop the rest, so
a client that pipelines its set-up requests never comes online there. This machine follows the
conventional order that libpurple's oscar code and real servers use, one step per answer:

    cookie (channel 1)            -> wait for 01/03 host online
    01/17 client versions         -> wait for 01/18 host versions
    01/06 rate request            -> wait for 01/07 rate parameters
    04/04 ICBM parameter request  -> wait for 04/05 ICBM parameters
    01/08 rate ack, 04/02 ICBM parameters, 02/04 profile, 01/02 client online (last)

Every request we wait on travels alone, so even a server that handles one frame per read sees
all of them; the SNACs that have no answer go together at the end, 01/02 last of all. The rate
ack follows the ICBM request instead of preceding it (libpurple's order) for that reason: were
they written together, such a server would answer the ack and drop the request.

Liberal in what it accepts: an error (or an unreadable body) instead of 01/18, 01/07 or 04/05
moves on with defaults (servers without rate classes or ICBM parameters exist); only a malformed
01/03, SNAC header or error body is a ProtocolError. Anything unsolicited (01/13 MOTD,
01/0F self info, 01/15 well-known URLs, 01/0A rate notices) is handed back to the caller
untouched. Timing is the caller's job: `awaiting` names the answer a timeout would be about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.snacs import (
    FAMILY_ICBM,
    FAMILY_LOCATE,
    FAMILY_OSERVICE,
    SUBGROUP_ERROR,
    ClientOnline,
    ClientVersions,
    FlapHello,
    HostOnline,
    HostVersions,
    IcbmParams,
    IcbmParamsReply,
    IcbmParamsRequest,
    IcbmParamsSet,
    LocateSetInfo,
    OfflineMessagesRequest,
    RateParamsAck,
    RateParamsReply,
    RateParamsRequest,
    SnacBody,
    SnacError,
    describe_error,
    encode_snac_body,
)
from aimbot.oscar.wire import Channel, Frame, SnacHeader, decode_snac

log = logging.getLogger(__name__)

# The families we speak, with the versions we declare (OService 3 as libpurple: servers then
# send 35-byte rate records). Locate (02) only carries our profile.
OUR_FAMILIES: tuple[tuple[int, int], ...] = (
    (FAMILY_OSERVICE, 3),
    (FAMILY_LOCATE, 1),
    (FAMILY_ICBM, 1),
)
TOOL_ID = 0x0110
TOOL_VERSION = 0x164F
FALLBACK_MAX_MESSAGE_BYTES = 512
OUR_ICBM_PARAMS = IcbmParamsSet()  # channel 0, typing notifications on, 8000-byte messages


class Step(Enum):
    """Where the sign-on stands; the value names the answer being waited for."""

    HOST_ONLINE = "the host-online list (01/03)"
    HOST_VERSIONS = "the host versions (01/18)"
    RATE_PARAMS = "the rate parameters (01/07)"
    ICBM_PARAMS = "the ICBM parameters (04/05)"
    ONLINE = "nothing (signed on)"
    SIGNED_OFF = "nothing (the server signed us off)"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One frame to write; `snac` is its (family, subgroup), for the caller's rate accounting."""

    channel: int
    payload: bytes
    snac: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """What one inbound frame led to: frames to write now (in one write), and the frame itself
    when the sign-on did not consume it (the caller dispatches it like any session frame)."""

    send: tuple[Outgoing, ...] = ()
    unhandled: Frame | None = None


class SignOn:
    """The client side of one BOS sign-on; feed it every frame, write what it returns.

    `request_id` allocates SNAC request ids (the caller's counter, so ids stay unique across
    the session). `profile` is the HTML profile for 02/04, sent only when the server lists the
    locate family in 01/03.
    """

    def __init__(
        self,
        cookie: bytes,
        request_id: Callable[[], int],
        *,
        profile: str | None = None,
    ) -> None:
        self._cookie = cookie
        self._request_id = request_id
        self._profile = profile
        self.step = Step.HOST_ONLINE
        self.host_families: tuple[int, ...] = ()
        self.rate_reply: RateParamsReply | None = None
        self.icbm_params: IcbmParams | None = None
        self.signoff_payload: bytes | None = None
        self._waiting_for: int | None = None  # request id of the SNAC we wait on

    @property
    def done(self) -> bool:
        return self.step in (Step.ONLINE, Step.SIGNED_OFF)

    @property
    def awaiting(self) -> str:
        return self.step.value

    def start(self) -> tuple[Outgoing, ...]:
        """The cookie frame; nothing else goes out until the server says it is ready (01/03)."""
        return (Outgoing(Channel.SIGNON, FlapHello.with_cookie(self._cookie).encode()),)

    def receive(self, frame: Frame) -> Received:
        """Advance on one inbound frame; ProtocolError if a sign-on SNAC is malformed."""
        if self.done:
            return Received(unhandled=frame)
        if frame.channel == Channel.SIGNOFF:
            self.signoff_payload = frame.payload
            self.step = Step.SIGNED_OFF
            return Received()
        if frame.channel != Channel.DATA:
            return Received(unhandled=frame)
        header, body = decode_snac(frame.payload)
        key = (header.family, header.subgroup)
        if self.step is Step.HOST_ONLINE and key == (HostOnline.FAMILY, HostOnline.SUBGROUP):
            self.host_families = HostOnline.decode(body).families
            return self._advance(Step.HOST_VERSIONS, [self._client_versions()])
        if header.subgroup == SUBGROUP_ERROR and self._answers(header):
            return self._on_error(SnacError.decode(body))
        if self.step is Step.HOST_VERSIONS and key == (HostVersions.FAMILY, HostVersions.SUBGROUP):
            # The versions the server echoes change nothing we do; their content is not checked.
            return self._advance(Step.RATE_PARAMS, [RateParamsRequest()])
        if self.step is Step.RATE_PARAMS and key == (
            RateParamsReply.FAMILY,
            RateParamsReply.SUBGROUP,
        ):
            try:
                self.rate_reply = RateParamsReply.decode(body)
            except ProtocolError as e:
                log.warning("cannot read the server's rate parameters (%s); not pacing sends", e)
                self.rate_reply = RateParamsReply((), ())
            return self._advance(Step.ICBM_PARAMS, [IcbmParamsRequest()])
        if self.step is Step.ICBM_PARAMS and key == (
            IcbmParamsReply.FAMILY,
            IcbmParamsReply.SUBGROUP,
        ):
            try:
                self.icbm_params = IcbmParamsReply.decode(body)
            except ProtocolError as e:
                log.warning("cannot read the server's ICBM parameters (%s); assuming defaults", e)
                self.icbm_params = IcbmParams(max_message_bytes=FALLBACK_MAX_MESSAGE_BYTES)
            return self._finish()
        return Received(unhandled=frame)

    # -- steps ------------------------------------------------------------------------------------

    def _answers(self, header: SnacHeader) -> bool:
        return self._waiting_for is not None and header.request_id == self._waiting_for

    def _on_error(self, error: SnacError) -> Received:
        reason = describe_error(error.code)
        if self.step is Step.HOST_VERSIONS:
            log.info("server refused our family versions (%s); going on", reason)
            return self._advance(Step.RATE_PARAMS, [RateParamsRequest()])
        if self.step is Step.RATE_PARAMS:
            log.info("server has no rate parameters (%s)", reason)
            self.rate_reply = RateParamsReply((), ())
            return self._advance(Step.ICBM_PARAMS, [IcbmParamsRequest()])
        log.info("server has no ICBM parameters (%s); assuming defaults", reason)
        self.icbm_params = IcbmParams(max_message_bytes=FALLBACK_MAX_MESSAGE_BYTES)
        return self._finish()

    def _client_versions(self) -> ClientVersions:
        return ClientVersions(self._families_with_versions())

    def _families_with_versions(self) -> tuple[tuple[int, int], ...]:
        # Declare only what the server serves; a server that listed nothing gets the basics.
        if not self.host_families:
            return tuple(fv for fv in OUR_FAMILIES if fv[0] != FAMILY_LOCATE)
        return tuple(fv for fv in OUR_FAMILIES if fv[0] in self.host_families)

    def _advance(self, step: Step, snacs: Sequence[SnacBody]) -> Received:
        self.step = step
        out = self._encode(snacs)
        return Received(send=out)

    def _encode(self, snacs: Sequence[SnacBody]) -> tuple[Outgoing, ...]:
        out = []
        for snac in snacs:
            request_id = self._request_id()
            self._waiting_for = request_id
            out.append(
                Outgoing(
                    Channel.DATA, encode_snac_body(snac, request_id), (snac.FAMILY, snac.SUBGROUP)
                )
            )
        return tuple(out)

    def _finish(self) -> Received:
        rates = self.rate_reply
        assert rates is not None
        snacs: list[SnacBody] = [RateParamsAck(tuple(c.class_id for c in rates.classes))]
        snacs.append(OUR_ICBM_PARAMS)
        if self._profile is not None:
            if FAMILY_LOCATE in self.host_families:
                snacs.append(LocateSetInfo.profile_text(self._profile))
            else:
                log.info("server offers no locate family (02); our profile is not set")
        families = self._families_with_versions()
        snacs.append(ClientOnline(tuple((f, v, TOOL_ID, TOOL_VERSION) for f, v in families)))
        # After 01/02, as real clients do: the IMs people sent while we were away.
        snacs.append(OfflineMessagesRequest())
        self.step = Step.ONLINE
        out = self._encode(snacs)
        self._waiting_for = None
        log.debug("sign-on complete; sent %s", ", ".join(_name(o) for o in out))
        return Received(send=out)


def _name(out: Outgoing) -> str:
    if out.snac is None:
        return f"channel {out.channel}"
    return f"{out.snac[0]:02x}/{out.snac[1]:02x}"
