"""Whether Dify accepts the bot's API key, for /healthz.

A wrong or revoked key is not an outage: Dify answers at once (401), the circuit breaker stays
closed, and every user gets "configuration problem on my side". So the key gets its own watch:
checked at start with a cheap authenticated call (GET /parameters), updated by every chat's
outcome, and re-checked now and then while it is rejected (the app's API access may be switched
back on in Dify without restarting the bot). The bot keeps running either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aimbot.api.errors import DifyAuthError, DifyError

log = logging.getLogger(__name__)

AUTH_OUTCOME = "auth"  # DifyAuthError.kind, as the DifyClient observer reports it
OK_OUTCOME = "ok"


class DifyKeyWatch:
    """The key's latest verdict: `rejected` is None while accepted (or not yet known)."""

    def __init__(self, recheck_interval: float = 60.0) -> None:
        if not recheck_interval > 0:
            raise ValueError(f"recheck_interval must be > 0, got {recheck_interval!r}")
        self.recheck_interval = recheck_interval
        self.rejected: str | None = None
        self.checked = asyncio.Event()  # set once a probe got an answer (accepted or rejected)
        self._changed = asyncio.Event()  # the key went from accepted to rejected
        self._verdict = asyncio.Event()  # any verdict (wait_until)

    async def wait_checked(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until the first probe got an answer (for tests and the doctor)."""
        async with asyncio.timeout(timeout):
            await self.checked.wait()

    async def wait_until(self, *, accepted: bool, timeout: float) -> None:  # noqa: ASYNC109
        """Until the verdict is `accepted` (for tests)."""

        async def until() -> None:
            while (self.rejected is None) is not accepted:
                self._verdict.clear()
                await self._verdict.wait()

        async with asyncio.timeout(timeout):
            await until()

    def observe(self, outcome: str, seconds: float) -> None:
        """DifyClient observer: one call per chat, with the outcome's error kind (or "ok")."""
        if outcome == AUTH_OUTCOME:
            self._reject("a chat query was refused with 401/403")
        elif outcome == OK_OUTCOME:
            self._accept()

    async def run(self, probe: Callable[[], Awaitable[object]]) -> None:
        """Check the key now, then again every `recheck_interval` while it is rejected."""
        warned = False
        while True:
            try:
                await probe()
            except DifyAuthError as e:
                first = self.rejected is None
                self._reject(str(e))
                self.checked.set()
                if first:
                    log.error(
                        "Dify rejects DIFY_API_KEY (%s): every user will get an apology until it "
                        "is fixed; checking again every %g s",
                        e,
                        self.recheck_interval,
                    )
            except DifyError as e:
                if not warned:
                    log.warning("could not check DIFY_API_KEY yet: %s", e)
                    warned = True
            except Exception:
                # A bug here must not end the watch (health would freeze on a stale verdict).
                log.exception("checking DIFY_API_KEY failed unexpectedly")
            else:
                if self.rejected is not None:
                    log.info("Dify accepts DIFY_API_KEY again")
                self._accept()
                self.checked.set()
                log.debug("Dify accepts DIFY_API_KEY")
                # Nothing to re-check until a chat is refused.
                self._changed.clear()
                await self._changed.wait()
            await asyncio.sleep(self.recheck_interval)

    def _reject(self, detail: str) -> None:
        if self.rejected is None:
            self._changed.set()
        self.rejected = detail
        self._verdict.set()

    def _accept(self) -> None:
        self.rejected = None
        self._verdict.set()
