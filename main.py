#!/usr/bin/env python3
"""aimbot's entry point: `python main.py` runs the bot, `python main.py --demo` the demo,
`python main.py doctor` checks a deployment and `python main.py test` runs the test suite.

The first part of this file uses the standard library only, so that a fresh clone works with
nothing but Python >= 3.11: when the dependencies are not importable it creates `.venv`,
installs the pinned requirements there and re-runs itself inside it. In the Docker image the
dependencies are installed system-wide, so nothing is bootstrapped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
RUNTIME_MODULES = ("aiohttp", "colorama", "dotenv", "prometheus_client")
DEV_MODULES = ("pytest", "pytest_asyncio", "pytest_timeout", "hypothesis", "yaml")


def _venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def _importable(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


def _requirements_digest(requirements: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("requirements*.txt")):
        digest.update(path.read_bytes())
    digest.update(requirements.name.encode())
    return digest.hexdigest()


def _install_into_venv(requirements: Path) -> None:
    stamp = VENV / f".installed-{requirements.stem}"
    wanted = _requirements_digest(requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"aimbot: installing {requirements.name} into {VENV} (first run only)…", file=sys.stderr)
    subprocess.run(
        [
            str(_venv_python()),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
        check=True,
    )
    stamp.write_text(wanted)


def ensure_environment(dev: bool) -> None:
    """Make the pinned dependencies importable, re-executing under .venv when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - a clear message on an old interpreter
        sys.exit(f"aimbot needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if os.environ.get("AIMBOT_NO_BOOTSTRAP") == "1":
        return
    modules = RUNTIME_MODULES + (DEV_MODULES if dev else ())
    requirements = ROOT / ("requirements-dev.txt" if dev else "requirements.txt")
    in_our_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if not in_our_venv and _importable(modules):
        return
    try:
        if not _venv_python().exists():
            print(f"aimbot: creating a virtual environment in {VENV}…", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        _install_into_venv(requirements)
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(
            f"aimbot: could not set up {VENV}: {exc}. "
            f"Install the dependencies yourself with: pip install -r {requirements.name}"
        )
    if not in_our_venv:
        python = str(_venv_python())
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["test"]:
        ensure_environment(dev=True)
        os.chdir(ROOT)
        return subprocess.call([sys.executable, "-m", "pytest", *argv[1:]])
    ensure_environment(dev=False)
    from aimbot.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
