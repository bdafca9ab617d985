"""The app of the "Testing your app" page: one handler per protocol."""

from twisted.internet.task import LoopingCall

from twistbridge import Bridge
from twistbridge.bgpy import respond

bridge = Bridge()


@bridge.izzati
def upload(text, data):
    return {"title": text.get("title"), "sizes": [f.size for f in data]}


@bridge.rpc_function
def add(a, b):
    return a + b


@bridge.igor_action("echo")
def echo(out, data, **kwargs):
    out.send(data)


def clock(output):
    """Send ``tick`` with 1, 2, 3... to every client, every second."""
    ticks = iter(range(1, 1_000_000))
    loop = LoopingCall(lambda: output.send("tick", next(ticks)))
    loop.start(1.0, now=False)
    return loop


bridge.igor_process("clock", clock)


def init_task():
    return {"value": 0}


def exec_task(client, state, exec_args):
    state["value"] += exec_args.get("add", 0)
    respond(client, dict(state))
    return state


def exit_task(client, state, exit_args):
    return state


bridge.bgpy_tasks(init_task, exec_task, exit_task)
