"""
The plain functions the offload tests run in each mode, in a module that
imports nothing but the standard library: a process-pool worker unpickling
one of them imports this module alone, so that starting a worker in a test
costs a Python start-up and not an import of Twisted and the bridge.

L{offload_app} serves the same functions through a real C{twistd bridge}.
"""

from __future__ import annotations

import os
import sys
import threading
import time


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


def spin_until(path):
    """Keep a CPU busy until C{path} exists; return how many loops ran."""
    loops = 0
    while not os.path.exists(path):
        for _ in range(100_000):
            loops += 1
    return loops


def wait_until(path):
    """Block until C{path} exists; return it."""
    while not os.path.exists(path):
        time.sleep(0.01)  # sleep-ok: a handler kept busy until the test lets go
    return path


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
    print(f"out: {text}", flush=True)
    print(f"err: {text}", file=sys.stderr, flush=True)
    return len(text)


def crash(status=3):
    """Die at once, without cleanup."""
    os._exit(status)


def unpicklable_result():
    """Return something that cannot be pickled."""
    return threading.Lock()


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
