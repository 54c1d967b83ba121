"""`python main.py doctor`: is this deployment able to work, and if not, what to do about it.

An operator whose bot stays silent needs to know which link of the chain is broken — config, AIM
server, AIM login, Dify URL, Dify key or disk — without reading logs. So each link is one check,
printed as one ✓/✗ line, and every ✗ names the TROUBLESHOOTING.md section with the fix. Checks
that depend on a failed one are shown as skipped rather than failing again for the same reason.

The exit code is 0 when everything passed, 2 when the configuration is invalid (like every other
command) and 1 when any other check failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sqlite3
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Final, TextIO

import aiohttp

from aimbot.api.dify_client import DifyClient
from aimbot.api.errors import DifyAuthError, DifyBadRequest, DifyError, DifyTimeout
from aimbot.config.settings import ConfigError, Settings, load_settings
from aimbot.oscar.errors import ConnectError, LoginError, OscarError
from aimbot.store import Store, StoreCorrupt, StoreError, StoreLocked
from aimbot.utils.logger import LoggingSetupError, setup_logging
from aimbot.wiring import dify_options, oscar_client

log = logging.getLogger(__name__)

DB_FILENAME: Final = "aimbot.sqlite3"
TROUBLESHOOTING: Final = "TROUBLESHOOTING.md"


class Section(Enum):
    """TROUBLESHOOTING.md headings the doctor points to (a test keeps them in sync)."""

    CONFIG = "Config errors"
    CANNOT_CONNECT = "Cannot connect to the AIM server"
    LOGIN = "Bad password or login rate-limited"
    DIFY = "Dify API failures"
    DATA_DIR = "Data dir not writable"
    CORRUPT = "Corrupt state database"


class Status(Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    title: str
    status: Status
    detail: str
    section: Section | None = None

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL


TITLE_CONFIG: Final = "config valid"
TITLE_AIM_SERVER: Final = "AIM server reachable"
TITLE_AIM_LOGIN: Final = "AIM login works"
TITLE_DIFY_URL: Final = "Dify URL reachable"
TITLE_DIFY_KEY: Final = "Dify key accepted"
TITLE_DATA_DIR: Final = "data dir writable"
ALL_TITLES: Final = (
    TITLE_CONFIG,
    TITLE_AIM_SERVER,
    TITLE_AIM_LOGIN,
    TITLE_DIFY_URL,
    TITLE_DIFY_KEY,
    TITLE_DATA_DIR,
)


def passed(title: str, detail: str) -> CheckResult:
    return CheckResult(title, Status.PASS, detail)


def failed(title: str, detail: str, section: Section) -> CheckResult:
    return CheckResult(title, Status.FAIL, detail, section)


def skipped(title: str, detail: str) -> CheckResult:
    return CheckResult(title, Status.SKIP, detail)


@dataclass(frozen=True)
class Marks:
    ok: str
    bad: str
    skip: str
    arrow: str


UNICODE_MARKS: Final = Marks("✓", "✗", "–", "→")
ASCII_MARKS: Final = Marks("OK  ", "FAIL", "SKIP", "->")


def marks_for(stream: TextIO) -> Marks:
    """✓/✗ where the terminal can show them; words where it cannot (an ASCII-only console)."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗–→".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return UNICODE_MARKS


def format_result(result: CheckResult, marks: Marks = UNICODE_MARKS) -> str:
    mark = {Status.PASS: marks.ok, Status.FAIL: marks.bad, Status.SKIP: marks.skip}[result.status]
    line = f"{mark} {result.title}: {result.detail}"
    if result.section is not None:
        line += f' {marks.arrow} fix: see {TROUBLESHOOTING}, "{result.section.value}"'
    return line


def exit_code(results: Sequence[CheckResult]) -> int:
    if any(r.failed and r.title == TITLE_CONFIG for r in results):
        return 2
    return 1 if any(r.failed for r in results) else 0


# -- the checks ------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


async def check_aim_server(settings: Settings) -> CheckResult:
    host, port, timeout = settings.aim_server, settings.aim_port, settings.aim_connect_timeout
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return failed(
            TITLE_AIM_SERVER,
            f"no answer from {where} within {timeout:g} s (firewall, wrong host?)",
            Section.CANNOT_CONNECT,
        )
    except socket.gaierror as e:
        return failed(
            TITLE_AIM_SERVER,
            f"cannot resolve host {host!r} ({e.strerror or e}); check AIM_SERVER",
            Section.CANNOT_CONNECT,
        )
    except ConnectionRefusedError:
        return failed(
            TITLE_AIM_SERVER,
            f"connection refused at {where}: nothing listens there (server down, wrong AIM_PORT?)",
            Section.CANNOT_CONNECT,
        )
    except OSError as e:
        return failed(
            TITLE_AIM_SERVER,
            f"cannot connect to {where}: {e.strerror or e}",
            Section.CANNOT_CONNECT,
        )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return passed(TITLE_AIM_SERVER, f"{where} accepts connections")


async def check_aim_login(settings: Settings) -> CheckResult:
    client = oscar_client(settings)
    limit = settings.aim_connect_timeout + settings.aim_read_timeout
    name = settings.aim_username
    try:
        async with asyncio.timeout(limit):
            await client.connect()
        size = client.max_message_bytes
    except LoginError as e:
        code = f" (code 0x{e.code:04x})" if e.code is not None else ""
        hint = "; wait before retrying" if e.retryable else "; check AIM_USERNAME and AIM_PASSWORD"
        return failed(TITLE_AIM_LOGIN, f"{name}: {e.reason}{code}{hint}", Section.LOGIN)
    except TimeoutError:
        return failed(
            TITLE_AIM_LOGIN, f"sign-on did not finish within {limit:g} s", Section.CANNOT_CONNECT
        )
    except (ConnectError, OscarError, OSError) as e:
        return failed(TITLE_AIM_LOGIN, f"sign-on failed: {_first_line(e)}", Section.CANNOT_CONNECT)
    finally:
        await client.close()
    return passed(TITLE_AIM_LOGIN, f"signed on as {name} (server allows {size}-byte IMs)")


async def check_dify_url(settings: Settings, session: aiohttp.ClientSession) -> CheckResult:
    """Is DIFY_API_URL the Dify API? `GET {url}/parameters` without a key tells, cheaply.

    The Dify API answers it 401 (or 200); a 404 means the path is wrong (most often the missing
    `/v1`), so a 404 is never reported as reachable. Other answers (a proxy's 502, …) prove the
    network path; the key check below then says what is behind it.
    """
    url = settings.dify_api_url
    probe = f"{url}/parameters"
    timeout = aiohttp.ClientTimeout(
        total=settings.dify_connect_timeout + 10, connect=settings.dify_connect_timeout
    )
    try:
        async with session.get(probe, timeout=timeout, allow_redirects=False) as response:
            status = response.status
    except TimeoutError:
        return failed(
            TITLE_DIFY_URL, f"no answer from {url} in time (firewall, proxy?)", Section.DIFY
        )
    except aiohttp.ClientConnectorCertificateError as e:
        return failed(
            TITLE_DIFY_URL, f"TLS certificate rejected: {e.certificate_error}", Section.DIFY
        )
    except (aiohttp.ClientSSLError, ssl.SSLError) as e:
        return failed(TITLE_DIFY_URL, f"TLS failed for {url}: {_first_line(e)}", Section.DIFY)
    except aiohttp.ClientConnectorError as e:
        return failed(
            TITLE_DIFY_URL,
            f"cannot connect to {e.host}:{e.port} ({e.strerror or 'connection failed'}); "
            "check DIFY_API_URL",
            Section.DIFY,
        )
    except (aiohttp.ClientError, OSError) as e:
        return failed(TITLE_DIFY_URL, f"{url}: {_first_line(e)}", Section.DIFY)
    if status == 404:
        return failed(
            TITLE_DIFY_URL,
            f"{probe} is HTTP 404: not the Dify API — does DIFY_API_URL end in /v1?",
            Section.DIFY,
        )
    if status in (200, 401):
        return passed(TITLE_DIFY_URL, f"{url} answers like the Dify API (HTTP {status})")
    return passed(TITLE_DIFY_URL, f"{url} answers (HTTP {status}; the key check tells more)")


async def check_dify_key(settings: Settings, session: aiohttp.ClientSession) -> CheckResult:
    # One attempt: the doctor reports what is wrong now instead of waiting through retries.
    options = replace(
        dify_options(settings),
        request_timeout=settings.dify_connect_timeout + 20,
        retry_max_attempts=1,
    )
    client = DifyClient(session, settings.dify_api_key.get(), options)
    try:
        await client.parameters()
    except DifyAuthError as e:
        status = f" (HTTP {e.status})" if e.status else ""
        return failed(
            TITLE_DIFY_KEY,
            f"Dify rejected DIFY_API_KEY{status}: wrong, revoked, or not this app's API key",
            Section.DIFY,
        )
    except DifyBadRequest as e:
        hint = " — does DIFY_API_URL end in /v1?" if e.status == 404 else ""
        return failed(TITLE_DIFY_KEY, f"GET /parameters: {_first_line(e)}{hint}", Section.DIFY)
    except DifyTimeout as e:
        return failed(TITLE_DIFY_KEY, f"GET /parameters timed out: {_first_line(e)}", Section.DIFY)
    except DifyError as e:
        return failed(TITLE_DIFY_KEY, f"GET /parameters failed: {_first_line(e)}", Section.DIFY)
    app = ""
    with contextlib.suppress(DifyError):  # /info is newer than /parameters; its absence is fine
        info = await client.info()
        if isinstance(info.get("name"), str) and info["name"]:
            app = f" (app {info['name']!r})"
    return passed(TITLE_DIFY_KEY, f"GET /parameters accepted the key{app}")


async def check_data_dir(settings: Settings) -> CheckResult:
    path = settings.data_dir / DB_FILENAME
    try:
        store = await Store.open(path, owner=False)  # leaves a crash marker in place
    except StoreLocked:
        # The running bot holds it, so it is usable; opening it here would not prove more.
        return passed(TITLE_DATA_DIR, f"{settings.data_dir} is in use by a running aimbot")
    except StoreCorrupt as e:
        return failed(TITLE_DATA_DIR, _first_line(e), Section.CORRUPT)
    except StoreError as e:
        return failed(TITLE_DATA_DIR, _first_line(e), Section.DATA_DIR)
    try:
        await store.counts()
    except (StoreError, OSError, sqlite3.Error) as e:
        return failed(TITLE_DATA_DIR, f"{path}: {_first_line(e)}", Section.DATA_DIR)
    finally:
        await store.close()
    return passed(TITLE_DATA_DIR, f"{path} opens for writing")


async def run_checks(
    settings: Settings,
    *,
    skip_login: bool = False,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Every check after the config one, in order; later ones skip when their basis failed.

    `on_result` sees each result as soon as it is known, so a slow check (a firewall eating
    packets) leaves the earlier lines on screen while the operator waits.
    """
    results: list[CheckResult] = []

    def record(result: CheckResult) -> CheckResult:
        results.append(result)
        if on_result is not None:
            on_result(result)
        return result

    server = record(await check_aim_server(settings))
    if skip_login:
        record(skipped(TITLE_AIM_LOGIN, "--skip-login given"))
    elif server.failed:
        record(skipped(TITLE_AIM_LOGIN, "the server is not reachable"))
    else:
        record(await check_aim_login(settings))
    async with aiohttp.ClientSession() as session:
        url = record(await check_dify_url(settings, session))
        if url.failed:
            record(skipped(TITLE_DIFY_KEY, "the Dify URL check failed"))
        else:
            record(await check_dify_key(settings, session))
    record(await check_data_dir(settings))
    return results


def config_result(settings: Settings) -> CheckResult:
    return passed(
        TITLE_CONFIG,
        f"bot {settings.aim_username!r} on {settings.aim_server}:{settings.aim_port}, "
        f"Dify at {settings.dify_api_url}, data in {settings.data_dir}",
    )


def result_json(result: CheckResult) -> dict[str, str | None]:
    return {
        "check": result.title,
        "status": result.status.value,
        "detail": result.detail,
        "fix": None if result.section is None else f'{TROUBLESHOOTING}, "{result.section.value}"',
    }


def run_doctor(
    env_file: Path, *, skip_login: bool = False, out: TextIO | None = None, as_json: bool = False
) -> int:
    """Print each check as it completes; with `as_json`, one JSON object at the end instead."""
    out = sys.stdout if out is None else out
    marks = marks_for(out)
    shown: list[CheckResult] = []

    def show(result: CheckResult) -> None:
        shown.append(result)
        if not as_json:
            print(format_result(result, marks), file=out, flush=True)

    code = _doctor(env_file, skip_login=skip_login, out=out, show=show, as_json=as_json)
    if as_json:
        body = {"ok": code == 0, "exit_code": code, "checks": [result_json(r) for r in shown]}
        print(json.dumps(body, indent=2, ensure_ascii=False), file=out, flush=True)
    return code


def _doctor(
    env_file: Path,
    *,
    skip_login: bool,
    out: TextIO,
    show: Callable[[CheckResult], None],
    as_json: bool,
) -> int:
    setup_logging(level="ERROR")
    try:
        settings = load_settings(env_file=env_file)
        setup_logging(
            level="DEBUG" if settings.log_level == "DEBUG" else "ERROR",
            secrets=settings.secrets(),
        )
    except ConfigError as e:
        if as_json:
            show(failed(TITLE_CONFIG, "; ".join(e.problems), Section.CONFIG))
        else:
            show(failed(TITLE_CONFIG, f"{len(e.problems)} problem(s):", Section.CONFIG))
            for problem in e.problems:
                print(f"    - {problem}", file=out)
        for title in ALL_TITLES[1:]:
            show(skipped(title, "needs a valid config"))
        return 2
    except (LoggingSetupError, ValueError) as e:
        show(failed(TITLE_CONFIG, _first_line(e), Section.CONFIG))
        return 2
    show(config_result(settings))
    results = asyncio.run(run_checks(settings, skip_login=skip_login, on_result=show))
    return exit_code([config_result(settings), *results])
