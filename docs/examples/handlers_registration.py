"""Registering handlers: what a registration checks, and what it says."""

from twistbridge import Bridge
from twistbridge.app import RegistrationError

bridge = Bridge(threads=4, max_queued=100)


@bridge.igor_action  # a bare decorator: the action is named "greet"
def greet(out, data, **kwargs):
    out.send(f"hello {data}")


@bridge.izzati
def upload(text, data):
    return {"files": [f.filename for f in data]}


@bridge.izzati(replace=True)  # a second callback must say so
def upload_v2(text, data):
    return {"fields": sorted(text), "files": len(data)}


def shout(data):  # an Igor action is called (out, data, **kwargs)
    return data.upper()


try:
    bridge.igor_action("shout", shout)
except RegistrationError as e:
    print(e)

try:
    bridge.izzati(upload)  # replacing without replace=True
except RegistrationError as e:
    print(e)
