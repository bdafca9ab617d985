"""
A bgpy init file: the three task functions, as bgpy's ``--init-file`` takes
them (and ``twistd bridge --bgpy-init-file``).

    python -m twistbridge.bgpy server 127.0.0.1 54321 --init-file tasks.py
"""

from twistbridge.bgpy import respond


def init_task():
    """The first state."""
    return {"request_count": 0, "value": 1000}


def exec_task(client, state, exec_args):
    """Count the request; change the value; answer it when asked."""
    state["request_count"] += 1
    if exec_args.get("command") == "increase":
        state["value"] += exec_args["value_change"]
    if exec_args.get("await_response"):
        respond(client, {"value": state["value"]})
    return state


def exit_task(client, state, exit_args):
    """The last answer."""
    state["status"] = "Exited."
    respond(client, state)
