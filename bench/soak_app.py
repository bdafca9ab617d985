"""The app `bench/soak.py` runs: checksummed uploads, echo, a broadcast counter."""

import hashlib

from twisted.internet.task import LoopingCall

from twistbridge import Bridge, respond

bridge = Bridge()


@bridge.izzati
def upload(text, data):
    """Answer each file's sha256, so the client can check nothing was lost."""
    return {
        "seq": text.get("seq"),
        "files": [
            {
                "filename": f.filename,
                "size": f.size,
                "sha256": hashlib.sha256(f.read()).hexdigest(),
            }
            for f in data
        ],
    }


@bridge.igor_action("echo", run_in="reactor")
def echo(out, data, **kwargs):
    """Send data back once."""
    out.send(data)


def counter(output):
    """Broadcast an increasing counter ten times a second."""
    state = {"n": 0}

    def tick():
        state["n"] += 1
        output.send("count", state["n"])

    loop = LoopingCall(tick)
    loop.start(0.1, now=False)
    return loop


bridge.igor_process("counter", counter)


@bridge.rpc_function(run_in="reactor")
def add(a, b):
    """a + b in the reactor."""
    return a + b


@bridge.rpc_function
def mul(a, b):
    """a * b in the thread pool."""
    return a * b


def init_task(client):
    """A counter of acknowledged EXECs."""
    return {"count": 0}


def exec_task(client, state, exec_args):
    """Add exec_args["n"] to the counter."""
    state["count"] += exec_args.get("n", 1)
    return state


def exit_task(client, state, exit_args):
    """Answer the final state."""
    respond(client, state)


bridge.bgpy_tasks(init_task, exec_task, exit_task)
