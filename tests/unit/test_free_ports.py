"""The port helper that tells out-of-process servers where to listen must never repeat a port."""

from __future__ import annotations

import socket

from tests.helpers.ports import HOST, free_ports


def test_ports_asked_together_are_distinct_and_bindable() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    with socket.socket() as sock:
        sock.bind((HOST, ports[0]))
