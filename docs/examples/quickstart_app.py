"""
The quickstart app: one Bridge serving all four protocols.

Run it from this directory with::

    twistd -n bridge --app quickstart_app:bridge
"""

import os

from twisted.logger import Logger

from twistbridge import Bridge, respond

bridge = Bridge()

# Where uploaded files are saved: ./uploads unless QUICKSTART_UPLOADS says.
UPLOADS = os.path.abspath(os.environ.get("QUICKSTART_UPLOADS") or "uploads")
os.makedirs(UPLOADS, exist_ok=True)
Logger().info("quickstart: uploads are saved in {where}", where=UPLOADS)


# 1. izzati: POST / with form fields and files ---------------------------------
@bridge.izzati
def upload(text, data):
    """Save every file; answer with the fields and what was saved."""
    files = []
    for f in data:
        f.save(UPLOADS)
        files.append({"filename": f.filename, "size": f.size})
    return {"status": "yes", "text": text, "files": files}


# 2. Igor: WebSocket actions -------------------------------------------------
@bridge.igor_action("greet")
def greet(out, data, **kwargs):
    """Send one greeting; the stream closes when the handler returns."""
    out.send("Hello " + data["name"])


@bridge.igor_action("countdown")
def countdown(out, data, **kwargs):
    """Send several messages on one stream (runs in a thread: it may block)."""
    for n in range(data["from"], 0, -1):
        out.send(n)


# 3. JSON-RPC 2.0 at /rpc ----------------------------------------------------
@bridge.rpc_function
def add(a, b):
    """Return a + b."""
    return a + b


@bridge.rpc_function
def divide(a, b):
    """Return a / b; dividing by zero answers a JSON-RPC error -32000."""
    return a / b


# 4. bgpy tasks on port 54321 ------------------------------------------------
def init_task(client):
    """Run once when the server starts (and after an EXIT, on the next INIT)."""
    return {"request_count": 0, "value": 1000}


def exec_task(client, state, exec_args):
    """Change the value, or ("get") send the state back as a second response."""
    state["request_count"] += 1
    if exec_args["command"] == "increase":
        state["value"] += exec_args["value_change"]
    if exec_args["command"] == "decrease":
        state["value"] -= exec_args["value_change"]
    if exec_args["command"] == "get":
        respond(client, dict(state))
    return state


def exit_task(client, state, exit_args):
    """Send the final state back."""
    state["request_count"] += 1
    state["status"] = "Exited."
    respond(client, state)


bridge.bgpy_tasks(init_task, exec_task, exit_task, allow_modules=[__name__])
