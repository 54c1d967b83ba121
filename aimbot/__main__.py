"""`python -m aimbot` is `python main.py` for an environment that already has the dependencies
(a Docker image, a system-wide install): same commands, same exit codes, no bootstrapping."""

import sys

from aimbot.cli import main

if __name__ == "__main__":
    sys.exit(main())
