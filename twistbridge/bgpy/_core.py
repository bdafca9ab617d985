"""bgpy's pure core: message types, framing and the task state machine."""

from __future__ import annotations

from typing import Any


def respond(client: Any, response: Any, error: bool = False) -> None:
    """Send the second response to a client that asked for one."""
    client.respond(response, error=error)
