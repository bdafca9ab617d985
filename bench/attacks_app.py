"""
The app `bench/attacks.py` runs: the built-in demo app, plus three Igor
actions that let the session-sharing attack observe what it got (its own
client id, and a marker written into and read from its session).
"""

from twistbridge.demo import bridge


@bridge.igor_action("whoami", run_in="reactor")
def whoami(out, data, client_id=None, **kwargs):
    """Send the connection's client id."""
    out.send(client_id)


@bridge.igor_action("session_put", run_in="reactor")
def session_put(out, data, session=None, **kwargs):
    """Store C{data} as this session's marker."""
    session["marker"] = data
    out.send("stored")


@bridge.igor_action("session_get", run_in="reactor")
def session_get(out, data, session=None, **kwargs):
    """Send this session's marker (None when unset)."""
    out.send(session.get("marker"))


__all__ = ["bridge"]
