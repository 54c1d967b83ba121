"""The SSE decoder and the answer assembler, as plain data (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimbot.api.errors import DifyBadRequest, DifyProtocolError, DifyStreamError, DifyUnavailable
from aimbot.api.sse import AnswerAssembler, SseDecoder, SseEvent, TextChunk, parse_event_json

CONV = "8f0c1f8e-5a3e-4b8e-9d55-0c2b7d9a1e01"
MSG = "5b1d4b2e-0b9f-4c55-8f3a-7a5d7c1e9f02"
TASK = "c0ffee00-1111-4222-8333-944455556666"


def decode(chunks: Iterable[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def frame(payload: Mapping[str, Any], *, ascii_only: bool = False) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=ascii_only).encode() + b"\n\n"


def chat_stream(chunks: list[str], *, ascii_only: bool = False) -> bytes:
    base = {"task_id": TASK, "id": MSG, "message_id": MSG, "conversation_id": CONV}
    parts = [b"event: ping\n\n"]
    parts += [
        frame({"event": "message", **base, "answer": c}, ascii_only=ascii_only) for c in chunks
    ]
    parts.append(
        frame({"event": "message_end", **base, "metadata": {"usage": {"total_tokens": 7}}})
    )
    return b"".join(parts)


def assemble(payloads: Iterable[Mapping[str, Any]], conversation_id: str | None = None) -> str:
    assembler = AnswerAssembler(conversation_id)
    for payload in payloads:
        assembler.feed(payload)
    return assembler.finish().text


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "conversation_id": CONV, "message_id": MSG, "task_id": TASK, **fields}


# ---------------------------------------------------------------------------- decoder


def test_decoder_separates_data_events_and_bare_ping() -> None:
    events = decode([b'event: ping\n\ndata: {"event":"message"}\n\n'])
    assert events == [SseEvent("ping", ""), SseEvent(None, '{"event":"message"}')]
    assert events[0].is_ping and not events[1].is_ping


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_decoder_accepts_every_line_ending(newline: bytes) -> None:
    stream = b"data: a" + newline + newline + b"event: ping" + newline + newline
    assert decode([stream]) == [SseEvent(None, "a"), SseEvent("ping", "")]


def test_decoder_crlf_split_between_chunks_is_one_line_break() -> None:
    assert decode([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [
        SseEvent(None, "a"),
        SseEvent(None, "b"),
    ]


def test_decoder_joins_multiline_data_and_skips_comments_and_unknown_fields() -> None:
    stream = b": keep-alive\nid: 7\nretry: 10\ndata: one\ndata:two\nfoo: bar\n\n"
    assert decode([stream]) == [SseEvent(None, "one\ntwo")]


def test_decoder_dispatches_a_final_event_that_lacks_its_blank_line() -> None:
    assert decode([b'data: {"event":"message_end"}']) == [SseEvent(None, '{"event":"message_end"}')]
    assert decode([b"data: x\n"]) == [SseEvent(None, "x")]


def test_decoder_empty_stream_has_no_events() -> None:
    assert decode([]) == []
    assert decode([b"\n\n\n"]) == []


def test_decoder_refuses_a_runaway_line() -> None:
    decoder = SseDecoder(max_line_bytes=100)
    assert list(decoder.feed(b"data: " + b"x" * 90)) == []
    with pytest.raises(DifyProtocolError, match="exceeds 100 bytes"):
        list(decoder.feed(b"x" * 20))


def test_decoder_handles_a_line_longer_than_aiohttps_default_limit() -> None:
    text = "ü" * 200_000  # 400 kB in one line, as a New Agent closing message can be
    events = decode([frame({"event": "message", "answer": text})])
    assert parse_event_json(events[0])["answer"] == text


@given(
    chunks=st.lists(st.text(max_size=40), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    ascii_only=st.booleans(),
)
def test_any_split_of_a_stream_reassembles_the_same_answer(
    chunks: list[str], cuts: list[int], ascii_only: bool
) -> None:
    stream = chat_stream(chunks, ascii_only=ascii_only)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assembler = AnswerAssembler()
    for event in decode(pieces):
        if event.data:
            assembler.feed(parse_event_json(event))
    result = assembler.finish()
    assert result.text == "".join(chunks)
    assert result.conversation_id == CONV
    assert dict(result.usage) == {"total_tokens": 7}


_FIELD_VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)


@settings(max_examples=min(settings().max_examples, 1000))
@given(
    events=st.lists(
        st.tuples(
            st.one_of(st.none(), _FIELD_VALUE), st.lists(_FIELD_VALUE, min_size=1, max_size=3)
        ),
        max_size=6,
    ),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    colon=st.sampled_from([b":", b": "]),
)
def test_any_line_endings_and_split_give_the_same_events(
    events: list[tuple[str | None, list[str]]], endings: list[bytes], cuts: list[int], colon: bytes
) -> None:
    # LF-only chunks take the decoder's fast path, chunks with a CR the general one: however a
    # stream mixes them, the events are those written.
    # One ending per event: a CR ending a line and an LF ending the blank line after it would
    # be one CRLF, not two line breaks.
    stream = b""
    for i, (name, data) in enumerate(events):
        lines = [] if name is None else [b"event" + colon + name.encode()]
        lines += [b"data" + colon + value.encode() for value in data]
        stream += b"".join(line + endings[i % len(endings)] for line in [*lines, b""])
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]

    def read(value: str) -> str:  # one space after the colon is not part of the value
        return value[1:] if colon == b":" and value.startswith(" ") else value

    assert decode(pieces) == [
        SseEvent(None if name is None else read(name), "\n".join(map(read, data)))
        for name, data in events
    ]


@settings(max_examples=min(settings().max_examples, 1000))
@given(
    lines=st.lists(
        st.sampled_from(
            [
                b"",
                b"data: {}",
                b"data:x",
                b"data: ",
                b"data",
                b"event: ping",
                b": comment",
                b"id: 1",
            ]
        ),
        max_size=16,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_whole_blocks_decode_as_they_do_line_by_line(lines: list[bytes], cuts: list[int]) -> None:
    # One byte at a time, every line takes the general rules; in larger chunks a one-line
    # "data: " block takes the shortcut. Blank lines, comments and other fields anywhere.
    stream = b"".join(line + b"\n" for line in lines)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert decode(pieces) == decode(stream[i : i + 1] for i in range(len(stream)))


# ---------------------------------------------------------------------------- event JSON


@pytest.mark.parametrize(
    "data", ["not json", "[1, 2]", '"text"', '{"answer": "no event field"}', '{"event": 3}']
)
def test_malformed_event_data_is_a_protocol_error(data: str) -> None:
    with pytest.raises(DifyProtocolError):
        parse_event_json(SseEvent(None, data))


# ---------------------------------------------------------------------------- assembler


def test_chatbot_chunks_append_and_message_end_completes() -> None:
    assembler = AnswerAssembler()
    for payload in [ev("message", answer="Hel"), ev("message", answer="lo")]:
        assembler.feed(payload)
    assert not assembler.complete
    assembler.feed(ev("message_end", id=MSG, metadata={"usage": {"total_tokens": 3}}))
    result = assembler.finish()
    assert (result.text, result.conversation_id, result.message_id, result.task_id) == (
        "Hello",
        CONV,
        MSG,
        TASK,
    )
    assert result.usage["total_tokens"] == 3
    with pytest.raises(TypeError):
        result.usage["total_tokens"] = 4  # type: ignore[index]


def test_agent_thoughts_are_not_part_of_the_answer() -> None:
    payloads = [
        ev("agent_thought", id="thought-1", thought="let me search", tool="web", position=1),
        ev("agent_message", answer="It is "),
        ev("agent_thought", id="thought-2", observation="42", position=2),
        ev("agent_message", answer="42."),
        ev("message_end"),
    ]
    assembler = AnswerAssembler()
    for payload in payloads:
        assembler.feed(payload)
    result = assembler.finish()
    assert result.text == "It is 42."
    assert result.message_id == MSG  # not a thought's id


def test_new_agent_closing_message_replaces_rather_than_appends() -> None:
    payloads = [
        ev("agent_message", answer="Par"),
        ev("agent_message", answer="is"),
        ev("message", answer="Paris"),
        ev("message_end"),
    ]
    assert assemble(payloads) == "Paris"


def test_message_replace_discards_everything_so_far() -> None:
    payloads = [
        ev("message", answer="something "),
        ev("message", answer="unsafe"),
        ev("message_replace", answer="[moderated]", reason="output_moderation"),
        ev("message_end"),
    ]
    assert assemble(payloads) == "[moderated]"


def test_chatflow_events_are_ignored_and_trailing_events_are_fine() -> None:
    payloads = [
        ev("workflow_started", workflow_run_id="w", data={"id": "w"}),
        ev("node_started", data={"node_id": "n1"}),
        ev("text_chunk", data={"text": "ignored"}),
        ev("message", answer="ok"),
        ev("node_finished", data={"status": "succeeded"}),
        ev("message_end"),
        ev("workflow_finished", data={"status": "succeeded"}),
        ev("tts_message_end", audio=""),
        ev("some_future_event", whatever=True),
    ]
    assert assemble(payloads) == "ok"


def test_error_event_is_a_typed_failure_with_dify_fields() -> None:
    assembler = AnswerAssembler()
    assembler.feed(ev("message", answer="partial"))
    with pytest.raises(DifyStreamError) as info:
        assembler.feed(
            {
                "event": "error",
                "conversation_id": CONV,
                "message_id": MSG,
                "code": "completion_request_error",
                "status": 400,
                "message": "Read timed out.",
            }
        )
    error = info.value
    assert isinstance(error, DifyBadRequest)
    assert (error.code, error.message, error.status) == (
        "completion_request_error",
        "Read timed out.",
        400,
    )


def test_error_event_text_is_redacted() -> None:
    assembler = AnswerAssembler(redact=lambda text: text.replace("app-key", "[redacted]"))
    with pytest.raises(DifyStreamError) as info:
        assembler.feed({"event": "error", "code": "x", "message": "bad key app-key", "status": 400})
    assert "app-key" not in str(info.value)
    assert "[redacted]" in info.value.message


def test_error_event_without_fields_still_fails_clearly() -> None:
    with pytest.raises(DifyStreamError) as info:
        AnswerAssembler().feed({"event": "error", "status": True})
    assert (info.value.code, info.value.status) == ("stream_error", 400)


def test_chatflow_failure_without_error_event_is_not_an_answer() -> None:
    assembler = AnswerAssembler()
    assembler.feed(ev("message", answer="half"))
    assembler.feed(ev("workflow_finished", data={"status": "failed"}))
    with pytest.raises(DifyStreamError) as info:
        assembler.finish()
    assert info.value.code == "workflow_failed" and info.value.status == 500


def test_paused_chatflow_is_not_an_answer() -> None:
    assembler = AnswerAssembler()
    assembler.feed(ev("human_input_required", data={}))
    assembler.feed(ev("workflow_paused", data={}))
    with pytest.raises(DifyStreamError, match="paused"):
        assembler.finish()


def test_stream_that_ends_without_message_end_is_unavailable() -> None:
    assembler = AnswerAssembler()
    assembler.feed(ev("message", answer="cut off"))
    with pytest.raises(DifyUnavailable, match="without message_end"):
        assembler.finish()


def test_conversation_id_falls_back_to_the_callers() -> None:
    payloads = [{"event": "message", "answer": "x"}, {"event": "message_end"}]
    assembler = AnswerAssembler("given-id")
    for payload in payloads:
        assembler.feed(payload)
    assert assembler.finish().conversation_id == "given-id"
    with pytest.raises(DifyProtocolError, match="conversation"):
        assemble(payloads)


def test_non_text_answer_is_a_protocol_error_and_null_is_empty() -> None:
    with pytest.raises(DifyProtocolError, match="non-text"):
        AnswerAssembler().feed(ev("message", answer=["a"]))
    assert assemble([ev("message", answer=None), ev("message_end")]) == ""


def test_assembler_keeps_at_most_max_chars_and_says_so() -> None:
    assembler = AnswerAssembler("c", max_chars=10)
    assembler.feed({"event": "message", "answer": "12345"})
    assert (assembler.cut_short, assembler.has_text) == (False, True)
    assembler.feed({"event": "message", "answer": "67890abc"})
    assert assembler.cut_short
    result = assembler.partial("cut_short")
    assert (result.text, result.ending, result.conversation_id) == ("1234567890", "cut_short", "c")


def test_assembler_cap_applies_to_a_replacing_message_too() -> None:
    assembler = AnswerAssembler("c", max_chars=4)
    assembler.feed({"event": "message_replace", "answer": "abcdefgh"})
    assert assembler.cut_short and assembler.partial("cut_short").text == "abcd"


def test_on_text_hears_each_chunk_and_whether_it_replaces_the_text_so_far() -> None:
    heard: list[TextChunk] = []
    assembler = AnswerAssembler(max_chars=12, on_text=heard.append)
    base = {"conversation_id": "c", "message_id": "m", "task_id": "t-1"}
    for event, answer in [
        ("message", "Hello"),
        ("message", ""),  # nothing new: not told
        ("message", " world"),
        ("message_replace", "Moderated."),
        ("message", " and a long tail"),
    ]:
        assembler.feed({"event": event, **base, "answer": answer})
        assembler.tell()  # one read from the network per event
    assert heard == [
        TextChunk("Hello", True, "t-1"),  # the first text of an attempt replaces any before it
        TextChunk(" world", False, "t-1"),
        TextChunk("Moderated.", True, "t-1"),
        TextChunk(" a", False, "t-1"),  # cut at max_chars, like the answer itself
    ]
    assert assembler.cut_short


def test_on_text_hears_the_events_of_one_read_as_one_chunk() -> None:
    heard: list[TextChunk] = []
    assembler = AnswerAssembler(on_text=heard.append)
    base = {"conversation_id": "c", "message_id": "m", "task_id": "t-1"}
    assembler.feed({"event": "message", **base, "answer": "Hello"})
    assembler.feed({"event": "message", **base, "answer": " world"})
    assembler.tell()
    assembler.tell()  # nothing new
    assembler.feed({"event": "message", **base, "answer": "!"})
    assembler.feed({"event": "message_replace", **base, "answer": "Moderated."})
    assembler.feed({"event": "message", **base, "answer": " More."})
    assembler.tell()
    assembler.feed({"event": "message_replace", **base, "answer": ""})
    assembler.tell()
    assert heard == [
        TextChunk("Hello world", True, "t-1"),
        TextChunk("Moderated. More.", True, "t-1"),  # the replace: all the text so far
        TextChunk("", True, "t-1"),  # an empty replace still resets the listener
    ]


def test_an_answer_complete_before_anything_was_told_is_never_told() -> None:
    """Read whole at once, it is rendered whole (with its real part count), not streamed."""
    heard: list[TextChunk] = []
    assembler = AnswerAssembler(on_text=heard.append)
    base = {"conversation_id": "c", "message_id": "m", "task_id": "t-1"}
    assembler.feed({"event": "message", **base, "answer": "Hello"})
    assembler.feed({"event": "message_end", **base})
    assembler.tell()
    assembler.feed({"event": "message", **base, "answer": " late"})
    assembler.tell()
    assert heard == []
    assert assembler.finish().text == "Hello late"


def test_once_told_an_answer_is_told_to_its_end() -> None:
    heard: list[TextChunk] = []
    assembler = AnswerAssembler(on_text=heard.append)
    base = {"conversation_id": "c", "message_id": "m", "task_id": "t-1"}
    assembler.feed({"event": "message", **base, "answer": "Hello"})
    assembler.tell()
    assembler.feed({"event": "message", **base, "answer": " world"})
    assembler.feed({"event": "message_end", **base})
    assembler.tell()
    assert heard == [TextChunk("Hello", True, "t-1"), TextChunk(" world", False, "t-1")]
