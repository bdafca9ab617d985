"""
An app for the offload tests: handlers for every mode, and a small
C{/offload} resource that runs one of them through the bridge's offloader.

    GET /offload?fn=add&mode=process&args=[1,2]
        200 {"result": 3}
        500 {"error": "ValueError", "message": "..."}

A client that disconnects cancels its call (as every protocol does).
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import cached_property

from twisted.internet.defer import CancelledError
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge import Bridge
from twistbridge.offload import Handler
from twistbridge.runtime import Runtime


def add(a, b):
    """a + b."""
    return a + b


def where():
    """The process id and thread name this runs in."""
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


async def where_async():
    """L{where}, as a coroutine."""
    return where()


def cpu(seconds):
    """Keep a CPU busy for C{seconds}; return how many loops ran."""
    deadline = time.process_time() + seconds
    loops = 0
    while time.process_time() < deadline:
        loops += 1
    return loops


def sleep(seconds):
    """Block for C{seconds}."""
    time.sleep(seconds)  # sleep-ok: a blocking handler is the behaviour under test
    return seconds


def pid_then_sleep(path, seconds):
    """Write this process's id to C{path}, then block for C{seconds}."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(seconds)  # sleep-ok: a call to kill mid-way
    return seconds


def pid_then_wait(path, release):
    """Write this process's id to C{path}, then block until C{release} exists."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    while not os.path.exists(release):
        time.sleep(0.01)  # sleep-ok: a worker kept busy until the test lets go
    return release


def touch(path):
    """Create C{path}; return it."""
    with open(path, "w") as f:
        f.write("ran")
    return path


def chatty(text):
    """Print C{text} on stdout and on stderr; return its length."""
    import sys

    print(f"out: {text}", flush=True)
    print(f"err: {text}", file=sys.stderr, flush=True)
    return len(text)


def crash(status=3):
    """Die at once, without cleanup."""
    os._exit(status)


def unpicklable_result():
    """Return something that cannot be pickled."""
    return threading.Lock()


def returns_a_deferred():
    """Return a Deferred (which a process handler cannot)."""
    from twisted.internet.defer import Deferred

    return Deferred()


def returns_a_coroutine():
    """Return a coroutine (which a process handler cannot)."""

    async def inner():
        return 1

    return inner()


class Unpicklable(Exception):
    """An exception that holds a lock, so it cannot be pickled."""

    def __init__(self, message):
        Exception.__init__(self, message)
        self.lock = threading.Lock()


def raise_unpicklable():
    """Raise an exception that cannot travel back from a worker."""
    raise Unpicklable("holds a lock")


def count_primes(limit):
    """How many primes are below C{limit} (trial division, CPU-bound)."""
    count = 0
    for n in range(2, limit):
        i = 2
        while i * i <= n:
            if n % i == 0:
                break
            i += 1
        else:
            count += 1
    return count


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
