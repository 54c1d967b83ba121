"""Await a log line instead of sleeping: an event that is set when a matching record is logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator


class _Signal(logging.Handler):
    def __init__(self, text: str, event: asyncio.Event) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@contextlib.contextmanager
def log_signal(logger_name: str, text: str) -> Iterator[asyncio.Event]:
    """An event set once `logger_name` logs a record containing `text` (at INFO or above)."""
    logger = logging.getLogger(logger_name)
    event = asyncio.Event()
    handler = _Signal(text, event)
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield event
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
