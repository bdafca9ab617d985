"""
The demo app's bgpy tasks (the bgpy README's), in a module of their own:
the demo allows bgpy clients to name functions of this module only, and it
defines nothing else a client could name.
"""

from __future__ import annotations

from typing import Any, Dict

from twistbridge.bgpy._core import respond


def init_task(client: Any) -> Dict[str, Any]:
    """The bgpy README's initial state."""
    return {"request_count": 0, "value": 1000}


def exec_task(
    client: Any, state: Dict[str, Any], exec_args: Dict[str, Any]
) -> Dict[str, Any]:
    """C{increase} / C{decrease} the value by C{value_change}."""
    state["request_count"] += 1
    if exec_args.get("command") == "increase":
        state["value"] += exec_args["value_change"]
    if exec_args.get("command") == "decrease":
        state["value"] -= exec_args["value_change"]
    return state


def exit_task(client: Any, state: Dict[str, Any], exit_args: Dict[str, Any]) -> None:
    """Respond with the final state plus C{"status": "Exited."}."""
    state["request_count"] += 1
    state["status"] = "Exited."
    respond(client, state)
