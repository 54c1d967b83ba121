"""The interop suite: the real bot (`main.py`) against the real Open OSCAR Server from ../shared.

Skipped, with one line saying why, where the server binary is absent (a clone without ../shared);
$AIMBOT_OOS_BINARY points at another build.
"""

from __future__ import annotations

import pytest

from tests.helpers.oos_server import OOS_SKIP_REASON, oos_binary


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if oos_binary() is not None:
        return
    skip = pytest.mark.skip(reason=OOS_SKIP_REASON)
    for item in items:
        if "interop" in item.keywords:
            item.add_marker(skip)
