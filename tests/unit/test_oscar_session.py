"""The sign-on state machine without sockets: the conventional order, one step per answer."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS
from aimbot.oscar.session import (
    FALLBACK_MAX_MESSAGE_BYTES,
    Outgoing,
    SignOn,
    Step,
)
from aimbot.oscar.snacs import (
    ClientOnline,
    ClientVersions,
    FlapHello,
    HostOnline,
    HostVersions,
    IcbmParamsReply,
    LocateSetInfo,
    RateParamsAck,
    RateParamsReply,
    SignOff,
    SnacBody,
    SnacError,
    encode_snac_body,
)
from aimbot.oscar.wire import Channel, Frame, decode_snac, encode_snac
from tests.helpers.strict_oscar import CONVENTIONAL_ORDER

COOKIE = b"cookie-0123456789"
FAMILIES = (0x0001, 0x0002, 0x0004)
RATES = RateParamsReply(DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS)
SERVER_RID = 0x80000001


def frame(body: SnacBody, request_id: int = 0) -> Frame:
    return Frame(Channel.DATA, 0, encode_snac_body(body, request_id))


def error_frame(family: int, request_id: int, code: int = 0x0001) -> Frame:
    return Frame(Channel.DATA, 0, encode_snac(family, 0x0001, request_id, SnacError(code).encode()))


def names(out: tuple[Outgoing, ...]) -> list[str]:
    return ["cookie" if o.snac is None else f"{o.snac[0]:02x}/{o.snac[1]:02x}" for o in out]


def request_id_of(out: Outgoing) -> int:
    return decode_snac(out.payload)[0].request_id


def machine(profile: str | None = "I am a bot; type help") -> SignOn:
    counter = itertools.count(1)
    return SignOn(COOKIE, lambda: next(counter), profile=profile)


def unsolicited() -> list[Frame]:
    """What servers push during sign-on without being asked: MOTD, self info, URLs, a notice."""
    return [
        Frame(Channel.DATA, 0, encode_snac(0x0001, 0x0013, 0, b"\x00\x04")),
        Frame(Channel.DATA, 0, encode_snac(0x0001, 0x000F, 0, b"\x03bot\x00\x00\x00\x00")),
        Frame(Channel.DATA, 0, encode_snac(0x0001, 0x0015, 0, b"")),
        Frame(Channel.KEEPALIVE, 0, b""),
    ]


def test_the_conventional_order_one_step_per_answer() -> None:
    m = machine()
    start = m.start()
    assert names(start) == ["cookie"]
    assert FlapHello.decode(start[0].payload).cookie == COOKIE
    assert start[0].channel == Channel.SIGNON
    for noise in unsolicited():  # nothing at all goes out before 01/03
        result = m.receive(noise)
        assert result.send == () and result.unhandled == noise
    assert (m.step, m.done) == (Step.HOST_ONLINE, False)

    sent = m.receive(frame(HostOnline(FAMILIES))).send
    assert names(sent) == ["01/17"]
    versions = ClientVersions.decode(decode_snac(sent[0].payload)[1])
    assert versions.version_of(0x0001) == 3 and versions.version_of(0x0004) == 1
    for noise in unsolicited():
        assert m.receive(noise).send == ()

    sent = m.receive(frame(HostVersions(versions.versions), request_id_of(sent[0]))).send
    assert names(sent) == ["01/06"]
    assert m.receive(unsolicited()[0]).send == ()

    sent = m.receive(frame(RATES, request_id_of(sent[0]))).send
    assert names(sent) == ["04/04"]
    assert (m.rate_reply, m.done) == (RATES, False)

    sent = m.receive(frame(IcbmParamsReply(max_message_bytes=2544), request_id_of(sent[0]))).send
    assert names(sent) == ["01/08", "04/02", "02/04", "01/02", "04/10"]
    assert m.done and m.step is Step.ONLINE
    assert m.icbm_params is not None and m.icbm_params.max_message_bytes == 2544
    ack = RateParamsAck.decode(decode_snac(sent[0].payload)[1])
    assert ack.class_ids == tuple(c.class_id for c in DEFAULT_RATE_CLASSES)
    profile = LocateSetInfo.decode(decode_snac(sent[2].payload)[1])
    assert profile.profile == "I am a bot; type help"
    online = ClientOnline.decode(decode_snac(sent[3].payload)[1])
    assert {entry[0] for entry in online.entries} == set(FAMILIES)
    # After sign-on every frame belongs to the session.
    late = frame(HostOnline(FAMILIES))
    assert m.receive(late).unhandled == late


def test_request_ids_are_unique_across_the_sign_on() -> None:
    m = machine()
    m.start()
    ids = []
    sent = m.receive(frame(HostOnline(FAMILIES))).send
    ids += [request_id_of(o) for o in sent]
    sent = m.receive(frame(HostVersions(), ids[-1])).send
    ids += [request_id_of(o) for o in sent]
    sent = m.receive(frame(RATES, ids[-1])).send
    ids += [request_id_of(o) for o in sent]
    sent = m.receive(frame(IcbmParamsReply(), ids[-1])).send
    ids += [request_id_of(o) for o in sent]
    assert len(ids) == len(set(ids)) == 8


def test_no_locate_family_means_no_profile_and_no_locate_version() -> None:
    m = machine()
    m.start()
    sent = m.receive(frame(HostOnline((0x0001, 0x0004)))).send
    assert ClientVersions.decode(decode_snac(sent[0].payload)[1]).version_of(0x0002) is None
    sent = m.receive(frame(HostVersions(), request_id_of(sent[0]))).send
    sent = m.receive(frame(RATES, request_id_of(sent[0]))).send
    sent = m.receive(frame(IcbmParamsReply(), request_id_of(sent[0]))).send
    assert names(sent) == ["01/08", "04/02", "01/02", "04/10"]


def test_without_a_profile_no_set_info_is_sent() -> None:
    m = machine(profile=None)
    m.start()
    sent = m.receive(frame(HostOnline(FAMILIES))).send
    sent = m.receive(frame(HostVersions(), request_id_of(sent[0]))).send
    sent = m.receive(frame(RATES, request_id_of(sent[0]))).send
    assert names(m.receive(frame(IcbmParamsReply(), request_id_of(sent[0]))).send) == [
        "01/08",
        "04/02",
        "01/02",
        "04/10",
    ]


def test_errors_instead_of_answers_move_on_with_defaults() -> None:
    m = machine()
    m.start()
    sent = m.receive(frame(HostOnline(FAMILIES))).send
    sent = m.receive(error_frame(0x0001, request_id_of(sent[0]))).send
    assert names(sent) == ["01/06"]
    sent = m.receive(error_frame(0x0001, request_id_of(sent[0]), 0x0005)).send
    assert names(sent) == ["04/04"]
    assert m.rate_reply == RateParamsReply((), ())
    sent = m.receive(error_frame(0x0004, request_id_of(sent[0]))).send
    assert names(sent) == ["01/08", "04/02", "02/04", "01/02", "04/10"]
    assert m.icbm_params is not None
    assert m.icbm_params.max_message_bytes == FALLBACK_MAX_MESSAGE_BYTES
    assert RateParamsAck.decode(decode_snac(sent[0].payload)[1]).class_ids == ()


def test_an_error_about_another_request_is_not_taken_as_the_answer() -> None:
    m = machine()
    m.start()
    sent = m.receive(frame(HostOnline(FAMILIES))).send
    stray = error_frame(0x0001, request_id_of(sent[0]) + 1000)
    result = m.receive(stray)
    assert result.send == () and result.unhandled == stray
    assert m.step is Step.HOST_VERSIONS


def test_answers_out_of_turn_are_not_taken() -> None:
    m = machine()
    m.start()
    early = frame(RATES, 1)
    assert m.receive(early).unhandled == early  # 01/07 before 01/03: not ours to act on
    assert m.step is Step.HOST_ONLINE and m.rate_reply is None


def test_a_sign_off_during_sign_on_ends_it() -> None:
    m = machine()
    m.start()
    m.receive(frame(HostOnline(FAMILIES)))
    payload = SignOff(error_code=0x0001).encode()
    result = m.receive(Frame(Channel.SIGNOFF, 0, payload))
    assert result.send == ()
    assert m.done and m.step is Step.SIGNED_OFF and m.signoff_payload == payload


def test_malformed_sign_on_answers_raise_protocol_error_only() -> None:
    m = machine()
    m.start()
    with pytest.raises(ProtocolError):
        m.receive(Frame(Channel.DATA, 0, encode_snac(0x0001, 0x0003, 0, b"\x00")))  # odd length
    with pytest.raises(ProtocolError):
        m.receive(Frame(Channel.DATA, 0, b"\x00\x01"))  # not even a SNAC header


class OneFramePerReadServer:
    """A sans-IO server that handles only the first frame of each read and drops the rest.

    It is strict for every step a client has to wait on (cookie, 01/17, 01/06, 04/04), as the
    servers this mimics are during sign-on; `reads` records how many frames each read held.
    """

    def __init__(self) -> None:
        self.reads: list[int] = []
        self.handled: list[str] = []
        self.dropped = 0
        self.strict = True

    def read(self, batch: tuple[Outgoing, ...]) -> list[Frame]:
        self.reads.append(len(batch))
        if self.strict:
            self.dropped += len(batch) - 1
            batch = batch[:1]
        answers = []
        for out in batch:
            if out.snac is None:
                self.handled.append("cookie")
                answers.append(frame(HostOnline(FAMILIES)))
                continue
            header, _ = decode_snac(out.payload)
            name = f"{header.family:02x}/{header.subgroup:02x}"
            self.handled.append(name)
            reply: dict[str, Callable[[], SnacBody]] = {
                "01/17": HostVersions,
                "01/06": lambda: RATES,
                "04/04": IcbmParamsReply,
            }
            if name in reply:
                answers.append(frame(reply[name](), header.request_id))
            if name == "04/04":
                self.strict = False  # past the steps a client waits on
        return answers


def test_a_server_that_handles_one_frame_per_read_gets_every_request() -> None:
    server = OneFramePerReadServer()
    m = machine()
    pending = [server.read(m.start())]
    while pending and not m.done:
        for answer in pending.pop(0):
            result = m.receive(answer)
            if result.send:
                pending.append(server.read(result.send))
    assert m.done and m.step is Step.ONLINE
    assert server.dropped == 0
    assert server.reads == [1, 1, 1, 1, 5]
    assert server.handled == CONVENTIONAL_ORDER


def test_unreadable_rate_and_icbm_answers_move_on_with_defaults() -> None:
    m = machine()
    m.start()
    sent = m.receive(frame(HostOnline(FAMILIES))).send
    sent = m.receive(
        Frame(Channel.DATA, 0, encode_snac(1, 0x18, request_id_of(sent[0]), b"\x00"))
    ).send
    assert names(sent) == ["01/06"]  # an odd-length 01/18 is still the answer
    sent = m.receive(
        Frame(Channel.DATA, 0, encode_snac(1, 7, request_id_of(sent[0]), b"\x00\x05"))
    ).send
    assert names(sent) == ["04/04"] and m.rate_reply == RateParamsReply((), ())
    sent = m.receive(
        Frame(Channel.DATA, 0, encode_snac(4, 5, request_id_of(sent[0]), b"\x00"))
    ).send
    assert names(sent) == ["01/08", "04/02", "02/04", "01/02", "04/10"]
    assert m.icbm_params is not None
    assert m.icbm_params.max_message_bytes == FALLBACK_MAX_MESSAGE_BYTES


@given(st.lists(st.binary(max_size=60), max_size=12), st.binary(max_size=40))
def test_any_frames_advance_the_machine_or_raise_protocol_error_only(
    bodies: list[bytes], families: bytes
) -> None:
    m = machine()
    m.start()
    answers = [frame(HostOnline(tuple(families[i] for i in range(len(families)))))]
    for body in bodies:
        family, subgroup = (body[0] % 5, body[1] % 0x19) if len(body) >= 2 else (1, 1)
        answers.append(
            Frame(Channel.DATA, 0, encode_snac(family, subgroup, 1 + len(answers), body))
        )
    for answer in answers:
        try:
            result = m.receive(answer)
        except ProtocolError:
            continue
        assert all(o.channel == Channel.DATA for o in result.send)
        if m.done:
            assert names(result.send)[-1] == "01/02" or m.step is Step.SIGNED_OFF
