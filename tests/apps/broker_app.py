"""An Igor app for tests/broker: one leased process that ticks and relays."""

import os

from twisted.internet import task

from twistbridge import Bridge
from twistbridge.igor import UnknownClientError

OUTPUTS = {}


def relay(output):
    """Ticks every 0.2 s with this instance's pid; handlers send through it."""
    OUTPUTS["relay"] = output
    loop = task.LoopingCall(lambda: output.send("tick", {"pid": os.getpid()}))
    loop.start(0.2)
    return loop


def whoami(out, data, client_id, **kwargs):
    out.send({"client_id": client_id, "pid": os.getpid()})


def announce(out, data, **kwargs):
    """From a pool thread: broadcast C{data} through the relay process."""
    OUTPUTS["relay"].send("announce", data)
    out.send("sent")


def direct(out, data, **kwargs):
    """From a pool thread: send C{data["text"]} to client C{data["to"]}."""
    try:
        OUTPUTS["relay"].send("direct", data["text"], client_id=data["to"])
    except UnknownClientError as e:
        out.send(f"unknown: {e}")
    else:
        out.send("sent")


bridge = Bridge()
bridge.igor_actions({"whoami": whoami, "announce": announce, "direct": direct})
bridge.igor_process("relay", relay)
