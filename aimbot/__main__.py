"""`python -m aimbot` is `python main.py` for an environment that already has the dependencies
(a Docker image, a system-wide install): same commands, same exit codes, no bootstrapping.

Run with a Python that lacks them (outside the venv), it says so and how to proceed, instead of
dying on a ModuleNotFoundError traceback.
"""

import importlib.util
import sys

RUNTIME_MODULES = ("aiohttp", "dotenv", "prometheus_client", "colorama")


def _missing() -> list[str]:
    return [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]


if __name__ == "__main__":
    missing = _missing()
    if missing:
        sys.exit(
            f"aimbot: this Python ({sys.executable}) lacks {', '.join(missing)}. Run "
            "`python3 main.py …` instead (it sets up .venv by itself), use .venv/bin/python -m "
            "aimbot, or install the dependencies: pip install -r requirements.txt"
        )
    from aimbot.cli import main

    sys.exit(main())
