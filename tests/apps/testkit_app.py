"""An app of every protocol for the in-memory test client's tests (tests/testing)."""

import hashlib
import os

from twisted.internet.task import LoopingCall

from twistbridge import Bridge
from twistbridge.bgpy import respond

bridge = Bridge()
OUTPUTS = {}


@bridge.izzati
def upload(text, data):
    return {
        "text": text,
        "files": [
            {
                "name": f.name,
                "filename": f.filename,
                "size": f.size,
                "sha256": hashlib.sha256(f.read()).hexdigest(),
            }
            for f in data
        ],
    }


@bridge.rpc_function
def add(a, b):
    return a + b


@bridge.rpc_function(run_in="reactor")
def fail(message):
    raise ValueError(message)


def pid_plus(x):
    return [os.getpid(), x + 1]


bridge.rpc_function(pid_plus, run_in="process")


def unpicklable_result():
    return lambda: None


bridge.rpc_function(unpicklable_result, run_in="process")


@bridge.igor_action("echo")
def echo(out, data, **kwargs):
    out.send(data)


@bridge.igor_action("count")
def count(out, data, **kwargs):
    for i in range(data):
        out.send(i)


@bridge.igor_action("boom", run_in="reactor")
def boom(out, data, **kwargs):
    out.send("before")
    raise ValueError("boom: " + str(data))


@bridge.igor_action("whoami", run_in="reactor")
def whoami(out, data, client_id, **kwargs):
    out.send(client_id)


@bridge.igor_action("remember", run_in="reactor")
def remember(out, data, session, **kwargs):
    session["value"] = data
    out.send("ok")


@bridge.igor_action("recall", run_in="reactor")
def recall(out, data, session, **kwargs):
    out.send(session.get("value"))


@bridge.igor_action("tell", run_in="reactor")
def tell(out, data, **kwargs):
    """Send data["note"] to client data["to"] only, through the process output."""
    OUTPUTS["ticker"].send("note", data["note"], client_id=data["to"])


def ticker(output):
    OUTPUTS["ticker"] = output
    state = {"n": 0}

    def tick():
        state["n"] += 1
        output.send("tick", state["n"])

    loop = LoopingCall(tick)
    loop.start(5.0, now=False)
    return loop


bridge.igor_process("ticker", ticker)


def init_task():
    return {"value": 1000}


def exec_task(client, state, exec_args):
    if exec_args.get("command") == "increase":
        state["value"] += exec_args["value_change"]
    if exec_args.get("command") == "get":
        respond(client, dict(state))
    return state


def exit_task(client, state, exit_args):
    state["status"] = "Exited."
    return state


bridge.bgpy_tasks(init_task, exec_task, exit_task)
