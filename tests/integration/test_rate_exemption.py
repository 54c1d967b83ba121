"""A server advertises the limits it enforces; a client paces only against limits that bite."""

from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, RateMeter, never_limits, unlimited

ICBM_SEND = (0x0004, 0x0006)


def test_an_unlimited_class_never_delays() -> None:
    meter = RateMeter(unlimited(DEFAULT_RATE_CLASSES[2]), now_ms=0, level=0)
    assert meter.delay_ms(now_ms=0) == 0
    assert never_limits(unlimited(DEFAULT_RATE_CLASSES[2]))
    assert not never_limits(DEFAULT_RATE_CLASSES[2])
    limited = RateMeter(DEFAULT_RATE_CLASSES[2], now_ms=0, level=4000)
    assert limited.delay_ms(now_ms=0) > 0


async def _advertised_unlimited(server: OscarServer, name: str) -> bool:
    client = OscarClient(name, "pw-1234", "127.0.0.1", server.port)
    await client.connect()
    try:
        classes = client.rate_classes.values()
        return all(never_limits(c) for c in classes)
    finally:
        await client.close()


async def test_exempt_accounts_are_advertised_the_ordinary_classes_like_on_oos() -> None:
    async with OscarServer(enforce_rate_limits=True) as server:
        server.add_account("normal", "pw-1234")
        server.add_account("robot", "pw-1234", is_bot=True)
        assert not await _advertised_unlimited(server, "normal")
        assert not await _advertised_unlimited(server, "robot")


async def test_a_server_without_limits_says_so() -> None:
    async with OscarServer(enforce_rate_limits=False) as server:
        server.add_account("normal", "pw-1234")
        assert await _advertised_unlimited(server, "normal")
