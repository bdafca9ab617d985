"""A small app for --app tests."""

from twistbridge import Bridge

bridge = Bridge()
not_a_bridge = object()


@bridge.rpc_function(run_in="reactor")
def hello(name):
    return f"hello {name}"
