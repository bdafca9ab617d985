"""Log set-up: C{--log-format text} (twistd's own) or C{json}."""

from __future__ import annotations

from typing import Any


def configure_logging(settings: Any) -> None:
    """Apply C{settings.log_format} to the running process's log observers."""
