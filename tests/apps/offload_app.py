"""
An app for the offload tests: the functions of L{offload_calls} as
handlers in every mode, and a small C{/offload} resource that runs one of
them through the bridge's offloader.  (They live in a module of their own,
which imports no Twisted, so that a process worker running one starts
fast; the Igor and izzati handlers below are this module's own, so a worker
running one of them imports a whole app.)

    GET /offload?fn=add&mode=process&args=[1,2]
        200 {"result": 3}
        500 {"error": "ValueError", "message": "..."}

A client that disconnects cancels its call (as every protocol does).
"""

from __future__ import annotations

import json
import os
from functools import cached_property

from offload_calls import (
    add,
    count_primes,
    cpu,
    crash,
    pid_then_sleep,
    pid_then_wait,
    sleep,
    spin_until,
    touch,
    unpicklable_result,
    wait_until,
    where,
    where_async,
)
from twisted.internet.defer import CancelledError
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge import Bridge
from twistbridge.offload import Handler
from twistbridge.runtime import Runtime


def returns_a_deferred():
    """Return a Deferred (which a process handler cannot)."""
    from twisted.internet.defer import Deferred

    return Deferred()


def returns_a_coroutine():
    """Return a coroutine (which a process handler cannot)."""

    async def inner():
        return 1

    return inner()


FUNCTIONS = {
    f.__name__: f
    for f in (
        add,
        where,
        cpu,
        sleep,
        pid_then_sleep,
        pid_then_wait,
        touch,
        crash,
        unpicklable_result,
        count_primes,
        spin_until,
        wait_until,
    )
}


class OffloadResource(Resource):
    """C{GET /offload?fn=...&mode=...&args=[...]}: one call through the offloader."""

    isLeaf = True

    def __init__(self, bridge: Bridge) -> None:
        Resource.__init__(self)
        self._bridge = bridge

    def render_GET(self, request):
        """Run the call; answer its result or its error as JSON."""
        name = request.args[b"fn"][0].decode()
        mode = request.args[b"mode"][0].decode()
        args = json.loads(request.args.get(b"args", [b"[]"])[0])
        func = (
            where_async if (name == "where" and mode == "reactor") else FUNCTIONS[name]
        )
        d = self._bridge.offloader.call(Handler(func, mode, name), *args)

        def answer(result, code):
            if request._disconnected:
                return
            request.setResponseCode(code)
            request.setHeader(b"Content-Type", b"application/json")
            request.write(json.dumps(result).encode())
            request.finish()

        def failed(failure):
            if failure.check(CancelledError):
                return
            answer(
                {"error": type(failure.value).__name__, "message": str(failure.value)},
                500,
            )

        d.addCallbacks(lambda r: answer({"result": r}, 200), failed)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET


class OffloadRuntime(Runtime):
    """A L{Runtime} whose root resource has the C{/offload} test resource."""

    @cached_property
    def root(self):
        """The bridge's root resource, plus C{/offload}."""
        root = Runtime.root.func(self)
        root.putChild(b"offload", OffloadResource(self.registry))
        return root


class OffloadBridge(Bridge):
    """A L{Bridge} served by an L{OffloadRuntime}."""

    def runtime(self):
        """The bridge's one L{OffloadRuntime}."""
        if self._runtime is None:
            self._runtime = OffloadRuntime(self)
        return self._runtime


bridge = OffloadBridge()

# The same functions on the protocols, one per mode.
for _mode in ("reactor", "thread", "process"):
    bridge.rpc_function(add, name=f"add_{_mode}", run_in=_mode)
bridge.rpc_function(where_async, name="where_reactor")
bridge.rpc_function(where, name="where_thread", run_in="thread")
bridge.rpc_function(where, name="where_process", run_in="process")


def igor_where(out, data, **kwargs):
    """Igor: send where this runs, then C{data} doubled."""
    out.send(where())
    out.send(data * 2)


async def igor_where_async(out, data, **kwargs):
    """L{igor_where}, as a coroutine."""
    igor_where(out, data)


bridge.igor_action("where_reactor", igor_where_async)
bridge.igor_action("where_thread", igor_where, run_in="thread")
bridge.igor_action("where_process", igor_where, run_in="process")


def upload(text, data):
    """izzati: where this runs, the text and the files' sizes."""
    return {"where": where(), "text": text, "sizes": [len(f.read()) for f in data]}


# The izzati callback is one per bridge: its mode comes from the environment.
bridge.izzati(upload, run_in=os.environ.get("OFFLOAD_IZZATI_MODE", "process"))
