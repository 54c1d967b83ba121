"""Dify's server-sent events, sans I/O: bytes → events → one answer.

Kept free of sockets so that every odd stream (split anywhere, CRLF, pings only, an ``error`` in
the middle, a closing ``message`` from New Agent apps) can be tested as plain data. The client
feeds whatever chunks aiohttp hands it; neither TCP boundaries nor aiohttp's line-length limit
can break a long answer, because lines are reassembled here under our own limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from aimbot.api.errors import DifyProtocolError, DifyStreamError, DifyUnavailable

logger = logging.getLogger(__name__)

# One SSE line carries one JSON event; New Agent apps put the whole answer in one closing event.
# Far above any real answer, low enough that a runaway proxy cannot eat the process's memory.
MAX_LINE_BYTES = 4 * 1024 * 1024

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched SSE event: ``event`` is the SSE ``event:`` field (only ``ping`` in Dify)."""

    event: str | None
    data: str

    @property
    def is_ping(self) -> bool:
        return self.event == "ping" and not self.data


_PING = SseEvent("ping", "")
_DECODER = json.JSONDecoder()


def _simple_event(block: bytes) -> SseEvent | None:
    """The event of a block that is a single "data: " line or a ping (nearly every block Dify
    sends), or None for any other block, which goes by the general rules."""
    if block.startswith(b"data: ") and b"\n" not in block:
        return SseEvent(None, block[6:].decode("utf-8", errors="replace"))
    return _PING if block == b"event: ping" else None


class SseDecoder:
    """Incremental SSE decoder (WHATWG field rules, liberal about line endings and EOF).

    The standard says an event without its closing blank line at EOF is dropped; we dispatch it
    anyway, since a proxy cutting the final newline must not lose the ``message_end``.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_line = max_line_bytes
        self._pending = bytearray()
        self._event: str | None = None
        self._data: list[str] = []
        self._has_fields = False
        self._pending_cr = False

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        """Yield every event completed by ``chunk``; raises DifyProtocolError on a runaway line."""
        if self._pending_cr and chunk.startswith(b"\n"):
            # The CR that ended the previous chunk was the first half of a CRLF.
            chunk = chunk[1:]
        self._pending_cr = False
        buf = self._pending
        if b"\r" not in chunk:
            # Dify ends lines with LF only: split in C instead of scanning line by line (this
            # runs for every chunk of every answer). The pending partial line holds no line
            # break, so only the new bytes need looking at.
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                complete = bytes(buf) + chunk[:nl] if buf else chunk[:nl]
                buf.clear()
                buf += chunk[nl + 1 :]
                if complete.endswith(b"\n"):
                    # The usual read: it ends with a blank line, so every block in it is whole.
                    yield from self._lines(complete[:-1], whole=True)
                else:
                    yield from self._lines(complete, whole=False)
            else:
                buf += chunk
            self._check_pending()
            return
        # The pending partial line holds no line break, so only the new bytes need scanning:
        # a long line arriving in many small chunks stays linear, not quadratic.
        scan_from = len(buf)
        buf += chunk
        start = 0
        while True:
            nl = _find_line_end(buf, max(start, scan_from))
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            if buf[nl] == 0x0D:  # CR
                if nl + 1 < len(buf):
                    start = nl + 2 if buf[nl + 1] == 0x0A else nl + 1
                else:
                    start = nl + 1
                    self._pending_cr = True
            else:
                start = nl + 1
            event = self._line(line)
            if event is not None:
                yield event
        del buf[:start]
        self._check_pending()

    def _lines(self, complete: bytes, *, whole: bool) -> Iterator[SseEvent]:
        """The events of whole LF-ended lines (`complete` lacks the last LF); `whole`: the
        last block ended with its blank line too (which `complete` lacks as well).

        Nearly every Dify event is one "data: " line and a blank line: such a block becomes its
        event at once, and so does a ping; any other block goes line by line by the general
        rules.
        """
        blocks = complete.split(b"\n\n")
        partial = None if whole else blocks.pop()
        for block in blocks:
            event = None if self._has_fields else _simple_event(block)
            if event is None:
                yield from self._block(block)
            else:
                yield event
        if partial is not None:
            yield from self._line_events(partial)

    def _block(self, block: bytes) -> Iterator[SseEvent]:
        """The events of one block of lines and the blank line that ended it, by the general
        rules."""
        yield from self._line_events(block)
        event = self._line(b"")
        if event is not None:
            yield event

    def _line_events(self, lines: bytes) -> Iterator[SseEvent]:
        """The events of LF-separated lines, by the general rules."""
        for line in lines.split(b"\n"):
            event = self._line(line)
            if event is not None:
                yield event

    def _check_pending(self) -> None:
        """A partial line may not grow past the cap: a stream that never breaks its lines."""
        if len(self._pending) > self._max_line:
            raise DifyProtocolError(
                f"Dify stream line exceeds {self._max_line} bytes without a line break"
            )

    def close(self) -> Iterator[SseEvent]:
        """Flush at EOF: a trailing line without newline, then an undispatched event."""
        if self._pending:
            line = bytes(self._pending)
            self._pending.clear()
            event = self._line(line)
            if event is not None:
                yield event
        if self._has_fields:
            yield self._dispatch()

    def _line(self, raw: bytes) -> SseEvent | None:
        if not raw:
            return self._dispatch() if self._has_fields else None
        if raw.startswith(b"data:"):
            # Nearly every line: the general rules below, without decoding the name first.
            data = raw[6:] if raw[5:6] == b" " else raw[5:]
            self._data.append(data.decode("utf-8", errors="replace"))
            self._has_fields = True
            return None
        text = raw.decode("utf-8", errors="replace")
        if text.startswith(":"):
            return None  # comment (some proxies send these as keep-alives)
        name, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        # id:, retry: and unknown fields carry nothing Dify uses.
        return None

    def _dispatch(self) -> SseEvent:
        event = SseEvent(self._event, "\n".join(self._data))
        self._event = None
        self._data = []
        self._has_fields = False
        return event


def _find_line_end(buf: bytearray, start: int) -> int:
    lf = buf.find(b"\n", start)
    cr = buf.find(b"\r", start, lf if lf >= 0 else len(buf))
    return cr if cr >= 0 else lf


def parse_event_json(event: SseEvent) -> dict[str, Any]:
    """Decode one data event; Dify always sends a JSON object with a string ``event`` field."""
    data = event.data
    # raw_decode is json.loads without its two whitespace scans, a third of its cost on an
    # event. Anything it does not take whole (whitespace around the object, trailing bytes,
    # bad JSON) goes to loads, whose verdict stands.
    payload: Any = None
    try:
        payload, end = _DECODER.raw_decode(data)
        whole = end == len(data)
    except ValueError:
        whole = False
    if not whole:
        try:
            payload = json.loads(data)
        except ValueError as e:
            raise DifyProtocolError(
                f"Dify stream event is not JSON ({len(data)} characters)"
            ) from e
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise DifyProtocolError("Dify stream event is not an object with an 'event' field")
    return payload


# Events that carry nothing for a chat reply: Chatflow progress, TTS audio, reasoning traces.
_IGNORED_PREFIXES = ("workflow_", "node_", "iteration_", "loop_", "human_input_", "tts_message")
_IGNORED = frozenset(
    {"agent_thought", "message_file", "text_chunk", "reasoning_chunk", "agent_log", "ping"}
)


AnswerEnding = Literal["complete", "cut_short", "interrupted"]
"""How an answer ended: in full; cut at the size cap (``MAX_ANSWER_CHARS``); or broken off by
the stream after some text had arrived (the text so far is kept rather than asked for again)."""


@dataclass(frozen=True)
class StreamResult:
    """What a finished stream produced; the client turns it into an ``Answer``."""

    text: str
    conversation_id: str
    message_id: str
    task_id: str
    usage: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    ending: AnswerEnding = "complete"


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Answer text as it arrives, for progressive delivery.

    ``replaces``: the chunk is all the text so far rather than more of it (output moderation,
    an agent's closing message, or the first text of another attempt). ``task_id`` is what
    Dify's stop endpoint needs to end this generation.
    """

    text: str
    replaces: bool
    task_id: str


TextListener = Callable[[TextChunk], None]


class AnswerAssembler:
    """Folds Dify stream events into one answer, the way Dify's own apps mean them.

    Chunks of ``message``/``agent_message`` append; ``message_replace`` (output moderation)
    replaces everything; New Agent apps close with one ``message`` holding the full text, which
    must replace rather than append. ``message_end`` marks the answer complete, but the stream is
    still read to EOF (Chatflow sends ``workflow_finished`` after it; TTS trails it).

    ``max_chars`` bounds the text kept: past it the answer is ``cut_short`` and the caller stops
    reading (a runaway model or a hostile server must not fill the process's memory).
    """

    def __init__(
        self,
        conversation_id: str | None = None,
        *,
        redact: Callable[[str], str] = str,
        max_chars: int | None = None,
        on_text: TextListener | None = None,
    ) -> None:
        self._redact = redact
        self._max_chars = max_chars
        self._on_text = on_text
        self._told = False  # on_text has heard from this answer
        self._parts: list[str] = []
        self._untold = 0  # _parts from this index on are not told yet
        self._replaced = False  # the text was replaced since on_text last heard
        self._length = 0  # characters in _parts
        self._conversation_id = conversation_id or ""
        self._message_id = ""
        self._task_id = ""
        self._usage: Mapping[str, Any] = _EMPTY
        self._saw_agent_message = False
        self._workflow_status: str | None = None
        self.complete = False
        self.cut_short = False  # the text reached max_chars; the rest is not wanted
        self.events = 0
        self.pings = 0  # counted by the reader, for a timeout's explanation

    @property
    def task_id(self) -> str:
        """Known after the first data event; lets a caller stop a generation it abandons."""
        return self._task_id

    def feed(self, payload: Mapping[str, Any]) -> None:
        """Apply one decoded event; raises DifyStreamError for an ``error`` event."""
        self.events += 1
        kind = payload["event"]
        self._note_ids(payload)
        if kind == "error":
            raise _stream_error(payload, self._redact)
        if kind in ("message", "agent_message"):
            chunk = _text_field(payload, "answer")
            if kind == "agent_message":
                self._saw_agent_message = True
                self._append(chunk)
            elif self._saw_agent_message:
                self._replace(chunk)  # New Agent's closing full-text message
            else:
                self._append(chunk)
        elif kind == "message_replace":
            self._replace(_text_field(payload, "answer"))
        elif kind == "message_end":
            self.complete = True
            metadata = payload.get("metadata")
            usage = metadata.get("usage") if isinstance(metadata, dict) else None
            if isinstance(usage, dict):
                self._usage = MappingProxyType(dict(usage))
        elif kind == "workflow_finished":
            data = payload.get("data")
            status = data.get("status") if isinstance(data, dict) else None
            self._workflow_status = status if isinstance(status, str) else None
        elif kind == "workflow_paused":
            self._workflow_status = "paused"
        elif kind in _IGNORED or kind.startswith(_IGNORED_PREFIXES):
            pass
        else:
            # New event types keep appearing; they must not break a working bot.
            logger.debug("ignoring unknown Dify stream event %r", kind)

    @property
    def has_text(self) -> bool:
        """Whether any answer text has arrived: from then on the turn exists in Dify."""
        return self._length > 0

    def _append(self, chunk: str) -> None:
        if self._max_chars is not None and self._length + len(chunk) > self._max_chars:
            chunk = chunk[: self._max_chars - self._length]
            self.cut_short = True
        self._parts.append(chunk)
        self._length += len(chunk)

    def _replace(self, text: str) -> None:
        self._parts = []
        self._untold = 0
        self._length = 0
        self._replaced = True
        self._append(text)

    def tell(self) -> None:
        """Tell on_text the text that arrived since it last heard, as one chunk.

        The reader calls this once per read from the network, not per event: every event of
        one read arrives at the same moment, so progressive delivery makes the same parts from
        one chunk, at a fraction of the cost. An answer complete before anything was told is
        never told: the caller renders it whole, with its real part count.
        """
        if self._on_text is None or (len(self._parts) == self._untold and not self._replaced):
            return
        if self.complete and not self._told:
            self._untold = len(self._parts)
            self._replaced = False
            return
        new = self._parts[self._untold :]
        self._untold = len(self._parts)
        text = new[0] if len(new) == 1 else "".join(new)
        replaces, self._replaced = self._replaced, False
        if text or replaces:
            self._on_text(TextChunk(text, replaces or not self._told, self._task_id))
            self._told = True

    def partial(self, ending: AnswerEnding) -> StreamResult:
        """The text so far, for an answer that will not be completed (cut short or broken off)."""
        return self._result(ending)

    def _result(self, ending: AnswerEnding) -> StreamResult:
        return StreamResult(
            text="".join(self._parts),
            conversation_id=self._conversation_id,
            message_id=self._message_id,
            task_id=self._task_id,
            usage=self._usage,
            ending=ending,
        )

    def finish(self) -> StreamResult:
        """The answer at EOF; raises when the stream ended without completing it."""
        if not self.complete:
            if self._workflow_status in ("failed", "stopped", "paused"):
                raise DifyStreamError(
                    f"workflow_{self._workflow_status}",
                    f"the Chatflow run ended as {self._workflow_status!r} without an answer",
                    status=500 if self._workflow_status == "failed" else 400,
                )
            raise DifyUnavailable(
                f"Dify stream ended after {self.events} events without message_end"
            )
        if not self._conversation_id:
            raise DifyProtocolError("Dify stream never said which conversation it belongs to")
        return self._result("complete")

    def _note_ids(self, payload: Mapping[str, Any]) -> None:
        conversation_id = payload.get("conversation_id")
        if isinstance(conversation_id, str) and conversation_id:
            self._conversation_id = conversation_id
        message_id = payload.get("message_id") or payload.get("id")
        if isinstance(message_id, str) and message_id and payload["event"] != "agent_thought":
            self._message_id = message_id
        task_id = payload.get("task_id")
        if isinstance(task_id, str) and task_id:
            self._task_id = task_id


def _text_field(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DifyProtocolError(
            f"Dify {payload['event']} event has a non-text {name!r} ({type(value).__name__})"
        )
    return value


def _stream_error(payload: Mapping[str, Any], redact: Callable[[str], str]) -> DifyStreamError:
    code = payload.get("code")
    message = payload.get("message")
    status = payload.get("status")
    return DifyStreamError(
        redact(code) if isinstance(code, str) and code else "stream_error",
        redact(message) if isinstance(message, str) and message else "(no message)",
        status=status if isinstance(status, int) and not isinstance(status, bool) else 400,
    )
