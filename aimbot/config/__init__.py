"""Configuration: `load_settings()` reads and validates every setting at once."""

from aimbot.config.settings import (
    ENV_NAMES,
    MASK,
    ConfigError,
    Secret,
    Settings,
    load_settings,
)

__all__ = [
    "ENV_NAMES",
    "MASK",
    "ConfigError",
    "Secret",
    "Settings",
    "load_settings",
]
