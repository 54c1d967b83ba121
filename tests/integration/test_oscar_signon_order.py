"""Sign-on against a strict server over a real loopback socket (tests/helpers/strict_oscar.py).

That server handles only the first frame of each read and throws the rest of that read away, for
every step a client has to wait on, as some real servers do during sign-on. A client that
pipelines never comes online there; ours must, and must say clearly which answer never came.
"""

from __future__ import annotations

import asyncio

import pytest

from aimbot.oscar.client import OscarClient
from aimbot.oscar.errors import ConnectError
from aimbot.oscar.events import IncomingIM
from tests.helpers.oscar import HOST, WAIT
from tests.helpers.strict_oscar import CONVENTIONAL_ORDER, strict_server


async def test_the_client_signs_on_to_a_server_that_reads_one_frame_at_a_time() -> None:
    async with strict_server() as server:
        client = OscarClient("bot", "bot-password", HOST, server.port, profile="type help")
        try:
            async with asyncio.timeout(WAIT):
                await client.connect()
                await server.online.wait()
                events = client.events()
                event = await anext(events)
            assert client.online
            assert isinstance(event, IncomingIM) and event.text == "hello bot"
            # Every read of the strict phase held exactly one frame: nothing was pipelined.
            assert server.frames_per_strict_read == [1, 1, 1, 1]
            assert server.handled == CONVENTIONAL_ORDER
            assert server.profile == "type help"
        finally:
            await client.close()


async def test_a_server_that_never_answers_the_cookie_is_named_in_the_timeout() -> None:
    async with strict_server() as server:
        server.silent = True
        client = OscarClient("bot", "bot-password", HOST, server.port, connect_timeout=0.3)
        with pytest.raises(ConnectError, match=r"did not send the host-online list \(01/03\)"):
            await client.connect()
        assert not client.online
        await client.close()
