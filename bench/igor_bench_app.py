"""The app bench/igor_bench.py serves with `twistd bridge`: JSON echo, no processes."""

from twistbridge import Bridge

bridge = Bridge()


@bridge.igor_action("echo", run_in="reactor")
def echo(out, data, **kwargs):
    out.send(data)


@bridge.igor_action("echo_thread")
def echo_thread(out, data, **kwargs):
    out.send(data)
