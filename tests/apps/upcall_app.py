"""Functions run in process workers that ask the main process for things."""

import os
import struct
import threading

from twistbridge._poolworker import UpcallError, in_background, upcall


def ask(name, body):
    """The main process's answer to C{body}, or the error it gave."""
    try:
        return ("ok", upcall(name, body))
    except UpcallError as e:
        return ("error", str(e))


def ask_twice(name, first, second):
    """Two requests in one call."""
    return [ask(name, first), ask(name, second)]


def ask_from_threads(name, n):
    """C{n} threads of one call asking at once: each gets its own answer."""
    answers = {}

    def one(i):
        answers[i] = upcall(name, str(i).encode())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [answers[i] for i in range(n)]


def ask_in_background(name):
    """A request made after the call returned: its answer is still awaited."""
    seen = []

    def later():
        seen.append(upcall(name, b"background"))
        upcall(name, b"done:" + seen[0])

    in_background(later)
    return "returned"


def announce_oversized():
    """A broken worker: announces a request far over the bound."""
    os.write(4, struct.pack(">Q", (1 << 63) | (1 << 40)))
    return "not reached"
