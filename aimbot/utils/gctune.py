"""Cyclic garbage collector settings for the bot's own long-running process.

Almost everything the bot allocates for a message (events, SNACs, request objects, rows) is freed
by reference counting as soon as the message is answered; the cyclic collector only has to find
the rare reference cycle. With CPython's default thresholds (700, 10, 10) it nevertheless ran
about a hundred times a second under `python -m bench throughput` and each pass walked the
whole young generation (tasks, coroutine frames, aiohttp objects still in flight): measured with
gc.callbacks, 12-13% of the bot's CPU went to collections that found next to nothing (see
docs/benchmarks.md, issue 15).

So the bot process collects its young generation after 20,000 net allocations instead of 700
(the bound on what uncollected cycles can hold stays small: a few MB at most), and freezes what
exists at start-up (modules, classes, settings: alive until exit anyway) so that the rare full
collection no longer walks them. Only the bot's entry point calls this: tests, tools and the
bench's reference peers keep the interpreter's defaults.
"""

from __future__ import annotations

import gc
from typing import Final

GEN0_THRESHOLD: Final = 20_000


def tune_for_daemon() -> None:
    """Raise the young-generation threshold and freeze the objects that exist now."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    gc.collect()  # what start-up left as garbage goes now, not into the frozen set
    gc.freeze()
