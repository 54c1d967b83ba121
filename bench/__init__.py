"""Runnable measurements of aimbot (``python -m bench <command>``); not part of the test suite.

Every command drives the real bot (``python main.py`` in its own process) against the devserver
OSCAR server and the Dify stand-in on loopback, prints a human table and, with ``--json``, one
JSON object on the last line of stdout so that runs can be compared by a script.
"""
