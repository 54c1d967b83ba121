"""Free loopback ports for servers a test starts in another process (which must be told a port)."""

from __future__ import annotations

import contextlib
import socket

HOST = "127.0.0.1"


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct free ports. All are held bound at once before any is released: asked one
    at a time, the kernel may hand out the same port twice (a server then fails to bind its
    second listener, as a CI run once showed with Open OSCAR Server's TOC on its OSCAR port)."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = HOST) -> int:
    return free_ports(1, host)[0]
