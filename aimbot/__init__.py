"""aimbot: answers AIM instant messages through a Dify chat app.

Importing this package must not import third-party libraries: main.py imports it only after
making sure the dependencies are installed.
"""

__version__ = "0.1.0"
