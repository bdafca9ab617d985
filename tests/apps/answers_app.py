"""
An app for the tests of what clients are told: handlers that block (to fill
the thread pool), that raise, and that return what JSON cannot carry, on
every protocol.  Its Igor action is registered with a bare decorator.
"""

import threading

from twistbridge import Bridge, respond

bridge = Bridge()
gate = threading.Event()


@bridge.rpc_function
def block():
    """Hold a pool thread until L{release} (at most 30 s)."""
    return "released" if gate.wait(30) else "timed out"


@bridge.rpc_function(run_in="reactor")
def release():
    """Let every L{block} call return (runs in the reactor: never queued)."""
    gate.set()
    return True


@bridge.rpc_function
def add(a, b):
    return a + b


@bridge.rpc_function
def lookup(record):
    return record["name"]


@bridge.rpc_function
def tags():
    return {"tags": {"a"}}


@bridge.izzati
def upload(text, data):
    action = text.get("action")
    if action == "lookup":
        return {}["name"]
    if action == "set":
        return {1, 2}
    return {"text": text}


@bridge.igor_action
def echo(out, data, **kwargs):
    if data == "lookup":
        return {}["name"]
    if data == "set":
        out.send({1})
    out.send(data)


def init_task(client):
    return {"count": 0}


def exec_task(client, state, exec_args):
    command = exec_args.get("command")
    if command == "lookup":
        return {}["name"]
    if command == "object":
        respond(client, {"value": object()})
        return state
    state["count"] += 1
    respond(client, {"count": state["count"]})
    return state


def exit_task(client, state, exit_args):
    pass


bridge.bgpy_tasks(init_task, exec_task, exit_task)
