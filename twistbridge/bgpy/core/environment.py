"""bgpy's constants (C{bgpy.core.environment})."""

from twistbridge.bgpy._core import BUFFER_TIME, HEADER_SIZE

__all__ = [
    "BUFFER_SIZE",
    "BUFFER_TIME",
    "ENV_TOKEN",
    "HEADER_SIZE",
    "HOST",
    "LOG_LEVEL",
    "PORT",
    "STARTUP_TIME",
]

HOST = "127.0.0.1"
"""bgpy's default host."""

PORT = 54321
"""bgpy's default port."""

BUFFER_SIZE = 1024 * 2
"""The read size of bgpy's own sockets."""

STARTUP_TIME = 1
"""Seconds bgpy's C{run_background} waits for its server."""

LOG_LEVEL = "INFO"
"""The default log level."""

ENV_TOKEN = "BGPY_TOKEN"
"""The environment variable holding the token."""
