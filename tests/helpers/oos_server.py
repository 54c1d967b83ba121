"""Start the real Open OSCAR Server on loopback for a test, with a temp DB and free ports.

Self-contained: where the binary is absent (a clone without ../shared), `oos_binary()` returns
None and the caller skips with `OOS_SKIP_REASON`. `AIMBOT_OOS_BINARY` points at another build.
Accounts are created through the server's management API (POST /user), never in its DB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.ports import free_ports

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT.parent / "shared" / "peers" / "open-oscar-server" / "open_oscar_server"
OOS_SKIP_REASON = (
    "Open OSCAR Server binary absent (../shared/peers/open-oscar-server; set AIMBOT_OOS_BINARY)"
)
START_TIMEOUT = 10.0
HTTP_TIMEOUT = 5.0


def oos_binary() -> Path | None:
    override = os.environ.get("AIMBOT_OOS_BINARY")
    path = Path(override) if override else DEFAULT_BINARY
    return path if path.is_file() and os.access(path, os.X_OK) else None


async def _http(port: int, method: str, path: str, body: object | None = None) -> tuple[int, str]:
    """One HTTP/1.0 request to the management API (no client library needed for four calls)."""
    payload = b"" if body is None else json.dumps(body).encode()
    async with asyncio.timeout(HTTP_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            head = (
                f"{method} {path} HTTP/1.0\r\nHost: {HOST}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    status_line, _, rest = raw.decode("utf-8", "replace").partition("\r\n")
    _, _, text = rest.partition("\r\n\r\n")
    return int(status_line.split()[1]), text


@dataclass
class OosServer:
    oscar_port: int
    api_port: int
    process: asyncio.subprocess.Process
    log_path: Path

    async def create_user(self, screen_name: str, password: str, *, is_bot: bool = False) -> None:
        status, text = await _http(
            self.api_port, "POST", "/user", {"screen_name": screen_name, "password": password}
        )
        if status != 201:
            raise RuntimeError(f"OOS POST /user {screen_name!r}: HTTP {status} {text!r}")
        if is_bot:
            status, text = await _http(
                self.api_port, "PATCH", f"/user/{screen_name}/account", {"is_bot": True}
            )
            if status != 204:
                raise RuntimeError(f"OOS PATCH is_bot {screen_name!r}: HTTP {status} {text!r}")

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""


async def _pump_log(stream: asyncio.StreamReader, log_path: Path, started: asyncio.Event) -> None:
    """Copy the server's output to its log file; `started` is set once both its OSCAR listener
    and its management API say they are starting (the event tests wait on, not a timer)."""
    seen: set[str] = set()
    with log_path.open("ab") as log_file:
        while line := await stream.readline():
            log_file.write(line)
            log_file.flush()
            if b'msg="starting server"' in line:
                seen.update(svc for svc in ("OSCAR", "API") if f"svc={svc} ".encode() in line)
                if seen == {"OSCAR", "API"}:
                    started.set()


async def _connectable(port: int) -> None:
    """The server logs before it binds; a refused connect right after is retried briefly."""
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.02)  # a bind in progress: retry, bounded (100 x 20 ms)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise RuntimeError(f"OOS logged that it started but 127.0.0.1:{port} refuses connections")


@contextlib.asynccontextmanager
async def running_oos(*, log_level: str = "info") -> AsyncIterator[OosServer]:
    binary = oos_binary()
    if binary is None:
        raise RuntimeError(OOS_SKIP_REASON)
    with tempfile.TemporaryDirectory(prefix="aimbot-oos-") as tmp:
        work = Path(tmp)
        oscar_port, api_port, toc_port, web_port = free_ports(4)
        settings = {
            "OSCAR_LISTENERS": f"LOCAL://{HOST}:{oscar_port}",
            "OSCAR_ADVERTISED_LISTENERS_PLAIN": f"LOCAL://{HOST}:{oscar_port}",
            "OSCAR_ADVERTISED_LISTENERS_SSL": "",
            "KERBEROS_LISTENERS": "",
            "TOC_LISTENERS": f"{HOST}:{toc_port}",
            "API_LISTENER": f"{HOST}:{api_port}",
            "WEBAPI_LISTENERS": f"{HOST}:{web_port}",
            "DB_PATH": str(work / "oscar.sqlite"),
            "DISABLE_AUTH": "false",
            "DISABLE_MULTI_LOGIN_NOTIF": "false",
            "ICQ_LEGACY_ENABLED": "false",
            "LOG_LEVEL": log_level,
        }
        config = work / "settings.env"
        config.write_text("".join(f"export {k}={v!r}\n" for k, v in settings.items()))
        log_path = work / "oos.log"
        process = await asyncio.create_subprocess_exec(
            str(binary),
            "-config",
            str(config),
            cwd=work,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        started = asyncio.Event()
        pump = asyncio.create_task(_pump_log(process.stdout, log_path, started), name="oos-log")
        exited = asyncio.create_task(process.wait(), name="oos-exit")
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = asyncio.create_task(started.wait(), name="oos-started")
                try:
                    await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ready.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ready
                if not started.is_set():
                    raise RuntimeError(f"OOS exited with {process.returncode} before listening")
                await _connectable(oscar_port)
                await _connectable(api_port)
            yield OosServer(oscar_port, api_port, process, log_path)
        finally:
            if process.returncode is None:
                process.terminate()
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    await exited
            except TimeoutError:
                process.kill()
                await exited
            await pump
