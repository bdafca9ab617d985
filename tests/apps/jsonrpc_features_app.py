"""A Bridge app exercising every JSON-RPC feature (tests/jsonrpc)."""

import asyncio
import os
import threading

from twisted.internet import defer, reactor

from twistbridge import Bridge

bridge = Bridge()

# --- the JSON-RPC 2.0 specification's examples, at /rpc -------------------


@bridge.rpc_function(run_in="reactor")
def subtract(minuend, subtrahend):
    return minuend - subtrahend


@bridge.rpc_function(name="sum", run_in="reactor")
def sum_(*numbers):
    return sum(numbers)


@bridge.rpc_function(run_in="reactor")
def update(*args):
    return None


@bridge.rpc_function(run_in="reactor")
def notify_hello(*args):
    return None


@bridge.rpc_function(run_in="reactor")
def notify_sum(*args):
    return None


@bridge.rpc_function(run_in="reactor")
def get_data():
    return ["hello", 5]


# --- run places and errors ----------------------------------------------


@bridge.rpc_function
def where():
    """Plain def: runs in the thread pool."""
    return threading.current_thread().name


@bridge.rpc_function(name="where_reactor", run_in="reactor")
def where_reactor():
    return (
        "reactor" if threading.current_thread() is threading.main_thread() else "other"
    )


@bridge.rpc_function
async def async_double(x):
    await asyncio.sleep(0) if False else None
    d = defer.Deferred()
    reactor.callLater(0, d.callback, x * 2)
    return await d


@bridge.rpc_function(run_in="reactor")
def deferred_triple(x):
    d = defer.Deferred()
    reactor.callLater(0, d.callback, x * 3)
    return d


def pid_plus(x):
    return [os.getpid(), x + 1]


bridge.rpc_function(pid_plus, run_in="process")


@bridge.rpc_function(run_in="reactor")
def server_pid():
    return os.getpid()


@bridge.rpc_function
def raises(message):
    raise RuntimeError(message)


@bridge.rpc_function
def raises_type_error():
    # A TypeError raised inside a method is a method error, not -32602.
    return len(5)


@bridge.rpc_function(run_in="reactor")
def not_json():
    return object()


@bridge.rpc_function(run_in="reactor")
def kwonly(a, *, b, c=3):
    return [a, b, c]


@bridge.rpc_function(run_in="reactor")
def echo(data):
    return data


def helloworld_target(data="Hello world!"):
    return data


helloworld_target._alias = ["helloworld", "hw"]
bridge.rpc_function(helloworld_target, name="greet", run_in="reactor")

# --- the magic variable ------------------------------------------------------


@bridge.rpc_function(run_in="reactor")
def whoami(_connection=None):
    return {
        "ip": _connection.ip,
        "agent": _connection.headers.get("X-Test"),
        "cookies": _connection.cookies,
        "path": _connection.path,
        "method": _connection.method,
        "has_server": _connection.server is not None,
    }


@bridge.rpc_function
def set_outputs(_connection):
    _connection.cookiesOut.append({"name": "session", "value": "abc", "httponly": True})
    _connection.headersOut["X-Custom"] = "yes"
    return "set"


@bridge.rpc_function(run_in="reactor")
def big(size, _connection):
    _connection.allowCompress = True
    return "x" * size


@bridge.rpc_function(run_in="reactor")
def big_plain(size):
    return "y" * size


# --- lock / unlock / wait / stats / callAsync ------------------------------


@bridge.rpc_function(run_in="reactor")
def guarded():
    return "ran"


@bridge.rpc_function(path="/control", run_in="reactor")
def lock(target=None, _connection=None):
    _connection.server.lock(guarded if target == "guarded" else None)
    return _connection.server.wait(returnStatus=True)


@bridge.rpc_function(path="/control", run_in="reactor")
def unlock(target=None, exclusive=False, _connection=None):
    _connection.server.unlock(guarded if target == "guarded" else None, exclusive)
    return True


@bridge.rpc_function(path="/control", run_in="reactor")
def stats(inMS=False, _connection=None):
    return _connection.server.stats(inMS=inMS)


@bridge.rpc_function
def call_async(x, _connection):
    return _connection.server.callAsync(lambda a: a * 10, [x])


# The control methods run even while everything is locked.
for _f in (lock, unlock, stats):
    bridge.rpc.unlock(_f, exclusive=True)

# --- blocking path --------------------------------------------------------

gate = threading.Event()
concurrency = {"now": 0, "max": 0, "started": 0}
counter_lock = threading.Lock()


@bridge.rpc_function(path="/serial")
def gated(n):
    with counter_lock:
        concurrency["now"] += 1
        concurrency["started"] += 1
        concurrency["max"] = max(concurrency["max"], concurrency["now"])
    gate.wait(10)
    with counter_lock:
        concurrency["now"] -= 1
    return n


bridge.rpc_path("/serial", blocking=True)


@bridge.rpc_function(path="/control", run_in="reactor")
def serial_state():
    return dict(concurrency)


@bridge.rpc_function(path="/control", run_in="reactor")
def open_gate():
    gate.set()
    return True


# --- slow and cancelled -------------------------------------------------

cancelled = {"count": 0}


@bridge.rpc_function(run_in="reactor")
def hang():
    def on_cancel(d):
        cancelled["count"] += 1

    return defer.Deferred(on_cancel)


@bridge.rpc_function(path="/control", run_in="reactor")
def cancelled_count():
    return cancelled["count"]


# --- CORS, JSONP, auth, gzip, nested paths -----------------------------------


@bridge.rpc_function(path="/api", run_in="reactor")
def add(a, b):
    return int(a) + int(b)


bridge.rpc_path("/api", cors=True, jsonp=True, compress_min_size=1000)


@bridge.rpc_function(path="/api", run_in="reactor")
def text(size):
    return "z" * int(size)


@bridge.rpc_function(path="/api/v2", run_in="reactor")
def version():
    return 2


bridge.rpc_path(
    "/api/v2", cors={"origin": ["http://localhost:8000"], "methods": "POST"}
)


def check_token(connection, method_name):
    if method_name == "public":
        return True
    return connection.headers.get("Authorization") == "Bearer good"


@bridge.rpc_function(path="/secure", run_in="reactor")
def secret():
    return 42


@bridge.rpc_function(path="/secure", run_in="reactor")
def public():
    return "open"


bridge.rpc_path("/secure", auth=check_token)


@bridge.rpc_function(path="/tiny", run_in="reactor")
def tiny():
    return 1


bridge.rpc_path("/tiny", max_batch_size=5)

# --- reload ---------------------------------------------------------------


@bridge.rpc_function(path="/control", run_in="reactor")
def reload_from(script, _connection):
    return _connection.server.reload(
        {
            "dispatcher": "compute",
            "scriptPath": script,
            "path": "/rpc",
            "run_in": "reactor",
        }
    )


@bridge.rpc_function(run_in="reactor")
def compute():
    return "original"


@bridge.rpc_function(path="/serial")
def slow_probe():
    """Report the most calls seen running at once (blocking test)."""
    import time

    with counter_lock:
        concurrency["now"] += 1
        concurrency["max"] = max(concurrency["max"], concurrency["now"])
    time.sleep(0.05)  # sleep-ok: overlapping calls are what the test looks for
    with counter_lock:
        concurrency["now"] -= 1
        return concurrency["max"]


parked_calls = []


@bridge.rpc_function(run_in="reactor")
def parked():
    """Returns a Deferred that fires when release_parked is called."""
    d = defer.Deferred()
    parked_calls.append(d)
    return d


@bridge.rpc_function(path="/control", run_in="reactor")
def release_parked():
    released = len(parked_calls)
    while parked_calls:
        parked_calls.pop().callback(None)
    return released
