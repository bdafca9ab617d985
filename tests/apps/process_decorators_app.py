"""Process-pool handlers registered with the decorator forms."""

import os

from twistbridge import Bridge

bridge = Bridge()


@bridge.rpc_function(run_in="process")
def crunch(n):
    return {"pid": os.getpid(), "double": 2 * n}


@bridge.izzati(run_in="process")
def upload(text, data):
    return {"pid": os.getpid(), "text": text}


@bridge.igor_action("crunch", run_in="process")
def crunch_action(out, data, **kwargs):
    out.send({"pid": os.getpid(), "double": 2 * data})
