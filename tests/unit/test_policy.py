from aimbot.bot.policy import AccessPolicy, RateDecision, UserRateLimiter
from aimbot.oscar.snacs import normalize_screen_name


def test_normalize_matches_server_identity() -> None:
    assert normalize_screen_name("Bob Smith") == "bobsmith"
    assert normalize_screen_name(" ALICE ") == "alice"


def test_access_lists() -> None:
    everyone = AccessPolicy()
    assert everyone.permits("anyone")
    allow = AccessPolicy(allowed=frozenset({"alice"}), blocked=frozenset({"mallory"}))
    assert allow.permits("alice")
    assert not allow.permits("bob")
    assert not AccessPolicy(blocked=frozenset({"mallory"})).permits("mallory")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_notifies_once_per_window_then_resets() -> None:
    clock = Clock()
    rl = UserRateLimiter(3, clock)
    assert [rl.check("a") for _ in range(3)] == [RateDecision.ALLOW] * 3
    assert rl.check("a") is RateDecision.NOTIFY
    assert rl.check("a") is RateDecision.DENY
    assert rl.check("b") is RateDecision.ALLOW  # users are independent
    clock.now = 60.0
    assert rl.check("a") is RateDecision.ALLOW


def test_zero_means_unlimited() -> None:
    rl = UserRateLimiter(0)
    assert all(rl.check("a") is RateDecision.ALLOW for _ in range(1000))


def test_idle_users_are_swept() -> None:
    clock = Clock()
    rl = UserRateLimiter(5, clock)
    for i in range(1000):
        rl.check(f"user{i}")
    clock.now = 61.0
    rl.check("late")
    assert len(rl) == 1
