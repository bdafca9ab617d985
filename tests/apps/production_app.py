"""A bridge with slow handlers, for the shutdown and daemon tests.

- izzati (C{POST /}): answers after sleeping C{text["seconds"]} (default 2).
- C{GET /slow?seconds=N}: a plain resource answering after N seconds
  (default 2) without blocking the reactor.
- JSON-RPC C{sleep(seconds)} at C{/rpc}.
- Igor action C{wait}: sleeps C{data} seconds, sends C{"done"}.
- bgpy tasks: C{exec_task} sleeps C{exec_args["sleep"]} seconds; C{exit_task}
  writes a marker file named by C{TWISTBRIDGE_TEST_EXIT_MARKER}, so a test
  can see it ran, after how many tasks.
"""

import os
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge import Bridge

bridge = Bridge(bgpy_token="production-secret-token-value")
log = Logger(namespace="production_app")


@bridge.izzati
def upload(text, data):
    log.info("slow upload started")
    time.sleep(float(text.get("seconds", 2)))  # sleep-ok: the slow handler under test
    return {"status": "slept", "files": [f.filename for f in data]}


@bridge.rpc_function
def sleep(seconds):
    time.sleep(seconds)  # sleep-ok: the slow handler under test
    return seconds


def init_task(client=None):
    return {"count": 0}


def exec_task(client, state, exec_args):
    seconds = float(exec_args.get("sleep", 0))
    if seconds:
        log.info("bgpy task started")
        time.sleep(seconds)  # sleep-ok: the slow task under test
    state["count"] += 1
    return state


def exit_task(client, state, exit_args):
    marker = os.environ.get("TWISTBRIDGE_TEST_EXIT_MARKER")
    if marker:
        with open(marker, "w") as f:
            f.write(f"exit_task ran after {state['count']} task(s)\n")


@bridge.igor_action("wait")
def wait(out, data, **kwargs):
    if data:
        log.info("igor stream started")
        time.sleep(float(data))  # sleep-ok: the slow stream under test
    out.send("done")


bridge.bgpy_tasks(init_task, exec_task, exit_task)


class SlowResource(Resource):
    """Answer C{GET /slow?seconds=N} after N seconds, in the reactor."""

    isLeaf = True

    def render_GET(self, request):
        seconds = float(request.args.get(b"seconds", [b"2"])[0])
        log.info("slow request started")

        def answer():
            request.setHeader(b"content-type", b"application/json")
            request.write(b'{"slept": %s}' % str(seconds).encode())
            request.finish()

        d = deferLater(
            reactor, seconds, answer
        )  # sleep-ok: the slow handler under test
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET


class CarelessResource(Resource):
    """C{GET /careless}: an app that logs secrets it should not."""

    isLeaf = True

    def render_GET(self, request):
        log.info(
            "careless: token {token} password {password} bgpy {value}",
            token="careless-token-value",
            password="careless-password-value",
            value=bridge.settings.token(),
        )
        return b"logged"


bridge.resource().putChild(b"slow", SlowResource())
bridge.resource().putChild(b"careless", CarelessResource())
