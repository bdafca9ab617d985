"""
The built-in demo app (SPEC section 7), served by C{twistd bridge} without
C{--app}: an upload summary, Igor C{echo} and a C{clock} process, JSON-RPC
C{echo}/C{add}, and the bgpy README's tasks.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.internet.task import LoopingCall

from twistbridge import Bridge, respond

bridge = Bridge()


@bridge.izzati
def upload(text: Dict[str, Any], data: list) -> Dict[str, Any]:
    """Answer with the fields and each file's name and size."""
    return {
        "status": "ok",
        "text": text,
        "files": [{"filename": f.filename, "size": f.size} for f in data],
    }


@bridge.igor_action("echo", run_in="reactor")
def echo(out: Any, data: Any, **kwargs: Any) -> None:
    """Send C{data} back once; the stream then closes."""
    out.send(data)


def clock(output: Any) -> LoopingCall:
    """Send action C{tick} with an increasing integer to every client each second."""
    state = {"n": 0}

    def tick() -> None:
        state["n"] += 1
        output.send("tick", state["n"])

    loop = LoopingCall(tick)
    loop.start(1.0, now=False)
    return loop


bridge.igor_process("clock", clock)


@bridge.rpc_function(name="echo", run_in="reactor")
def rpc_echo(data: Any) -> Any:
    """Return C{data}."""
    return data


@bridge.rpc_function(run_in="reactor")
def add(a: Any, b: Any) -> Any:
    """Return C{a + b}."""
    return a + b


def init_task(client: Any) -> Dict[str, Any]:
    """The bgpy README's initial state."""
    return {"request_count": 0, "value": 1000}


def exec_task(client: Any, state: Dict[str, Any], exec_args: Dict[str, Any]) -> Dict[str, Any]:
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


bridge.bgpy_tasks(init_task, exec_task, exit_task, allow_modules=[__name__])
