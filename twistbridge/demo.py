"""
The built-in demo app, served by C{twistd bridge} without
C{--app}: an upload summary, Igor C{echo} and a C{clock} process, JSON-RPC
C{echo}/C{add}, and the bgpy README's tasks (in L{twistbridge._demo_tasks}).
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.internet.task import LoopingCall

from twistbridge import Bridge, _demo_tasks
from twistbridge._demo_tasks import exec_task, exit_task, init_task

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
    """Return data unchanged."""
    return data


@bridge.rpc_function(run_in="reactor")
def add(a: Any, b: Any) -> Any:
    """Return a + b."""
    return a + b


# The bgpy tasks live in a module of their own: bgpy clients may name its
# functions, and only those (not this module's handlers).
bridge.bgpy_tasks(init_task, exec_task, exit_task, allow_modules=[_demo_tasks.__name__])
