"""
An Igor app for tests/broker: one leased process that ticks and relays,
and handlers that read and write the session.
"""

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


def remember(out, data, session, **kwargs):
    """Add C{data} to the session's notes; send them."""
    session.setdefault("notes", []).append(data)
    out.send(session["notes"])


def recall(out, data, session, **kwargs):
    """Send the whole session."""
    out.send(session)


def keep_object(out, data, session, **kwargs):
    """Put something JSON cannot carry into the session."""
    session["lock"] = object()
    out.send("kept")


bridge = Bridge()
bridge.igor_actions(
    {
        "whoami": whoami,
        "announce": announce,
        "direct": direct,
        "remember": remember,
        "recall": recall,
        "keep_object": keep_object,
    }
)
bridge.igor_process("relay", relay)
