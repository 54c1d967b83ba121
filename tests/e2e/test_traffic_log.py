"""The traffic log: one INFO line per answered message, its fields, and texts only on request."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from aimbot.ops.traffic import escape
from aimbot.utils.logger import JsonFormatter
from tests.helpers.e2e import rig

TRAFFIC = "aimbot.ops.traffic"


def traffic(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == TRAFFIC and r.levelno == level]


async def test_one_info_line_per_answer_with_its_figures_and_no_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aimbot")
    async with rig(tmp_path) as r:
        await r.start_bot()
        kim = await r.person("Kim Lee")
        await kim.say("secret question one")
        answer = await kim.reply()
        await r.quiescent()
    lines = traffic(caplog, logging.INFO)
    assert len(lines) == 1, [rec.getMessage() for rec in lines]
    record = lines[0]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["user"] == "Kim Lee"
    assert fields["ims"] == 1
    assert fields["chars_in"] == len("secret question one")
    assert fields["chars_out"] > 0 and fields["parts"] == 1
    assert 0 <= fields["dify_seconds"] <= fields["total_seconds"] + 0.5
    assert fields["outcome"] == "ok"
    conversation = r.dify.conversations
    assert any(cid.startswith(fields["conversation"]) for cid in conversation), fields
    assert len(fields["conversation"]) == 8
    message = record.getMessage()
    assert message.startswith("answered Kim Lee: 19 chars in, ")
    assert f"conversation {fields['conversation']}; ok" in message
    # Texts are the users': not at INFO, and not at DEBUG unless LOG_MESSAGE_TEXT is on.
    assert "secret question one" not in caplog.text
    assert answer.text not in caplog.text or not answer.text
    assert traffic(caplog, logging.DEBUG) == []
    # JSON logs carry the same figures as keys.
    payload = json.loads(JsonFormatter().format(record))
    assert payload["level"] == "INFO" and payload["logger"] == TRAFFIC
    for key in ("user", "ims", "chars_in", "chars_out", "parts", "conversation", "outcome"):
        assert payload[key] == fields[key], key
    assert payload["dify_seconds"] == fields["dify_seconds"]


async def test_texts_are_logged_at_debug_only_with_log_message_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aimbot")
    async with rig(tmp_path) as r:
        await r.start_bot(LOG_MESSAGE_TEXT="true")
        kim = await r.person("kim")
        await kim.say("line one\nline two")
        await kim.reply()
        await r.quiescent()
    texts = [rec.getMessage() for rec in traffic(caplog, logging.DEBUG)]
    assert texts[0] == "text from kim: line one\\nline two", texts  # escaped: one log line
    assert texts[1].startswith("text to kim: ")
    assert all("\n" not in text for text in texts)


def test_escape_keeps_a_forged_record_on_one_line_and_bounded() -> None:
    assert escape("eve\n2026-01-01 ERROR fake") == "eve\\n2026-01-01 ERROR fake"
    assert escape("\x1b[31mred") == "\\x1b[31mred"
    assert escape("x" * 100, 10) == "x" * 10 + "…"
    assert escape("Zoë") == "Zoë"
