"""Suite-wide settings. Fixtures live next to the tests that use them (tests/helpers/*)."""

import os

from hypothesis import HealthCheck, settings

# The CI profile runs every property test with at least 10,000 examples (issue 2).
settings.register_profile(
    "ci",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
