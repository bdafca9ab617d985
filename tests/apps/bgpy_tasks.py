"""bgpy tasks for the tests (the bgpy README's tasks, and a few more)."""

import json
import os
import time
from os import system  # noqa: F401  (a name a hostile pickle may try: refused)

from twistbridge.bgpy import respond


def init_task():
    return {"request_count": 0, "value": 1000}


def exec_task(client, state, exec_args):
    state["request_count"] += 1
    command = exec_args.get("command")
    if command == "increase":
        state["value"] += exec_args["value_change"]
    if command == "decrease":
        state["value"] -= exec_args["value_change"]
    if command == "get":
        respond(client, dict(state))
    if command == "sleep":
        time.sleep(
            exec_args["seconds"]
        )  # sleep-ok: a slow task is the behaviour under test
        respond(client, {"slept": exec_args["seconds"]})
    if command == "fail":
        raise ValueError("asked to fail")
    if command == "pid":
        respond(client, {"pid": os.getpid()})
    return state


def exit_task(client, state, exit_args):
    state["request_count"] += 1
    state["status"] = "Exited."
    record = os.environ.get("BGPY_TEST_EXIT_FILE")
    if record:  # lets a test see that exit_task ran at shutdown
        with open(record, "w") as f:
            json.dump(state, f)
    respond(client, state)
