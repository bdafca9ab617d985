"""Igor handlers and processes for tests/igor (served by twistd and IgorServer)."""

import queue
import time

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from twistbridge import Bridge
from twistbridge.igor import IgorProcess, StreamClosedError

OUTPUTS = {}


def echo(out, data, **kwargs):
    out.send(data)


def whoami(out, data, session, scope, client_id, **kwargs):
    out.send(client_id)


def boom(out, data, **kwargs):
    out.send("before")
    raise ValueError("boom: " + str(data))


def send_error(out, data, **kwargs):
    out.send_error("careful")
    out.send("after")


async def three(out, data, **kwargs):
    for i in range(3):
        d = Deferred()
        reactor.callLater(0.01, d.callback, None)
        await d
        out.send(i)


def session_set(out, data, session, **kwargs):
    session.update(data)
    out.send(sorted(session))


def session_get(out, data, session, **kwargs):
    out.send(session.get(data))


def scope_add(out, data, scope, **kwargs):
    scope.setdefault("items", []).append(data)
    out.send(len(scope["items"]))


def sessions_has(out, data, **kwargs):
    out.send(data in WORKER.sessions)


def broadcast(out, data, **kwargs):
    OUTPUTS["pusher"].send("note", data)


def direct(out, data, **kwargs):
    try:
        OUTPUTS["pusher"].send("note", data["data"], client_id=data["to"])
    except LookupError as e:
        out.send_error(e)


def via_thread(out, data, **kwargs):
    WORKER.inbox.put(data)


def shutdown(out, data, **kwargs):
    out.send("bye")
    raise SystemExit()


def flood(out, data, **kwargs):
    """Send 128 KiB messages every millisecond until the client is cut off."""
    chunk = "x" * 128 * 1024
    done = Deferred()

    def push():
        try:
            out.send(chunk)
        except StreamClosedError:
            loop.stop()

    loop = task.LoopingCall(push)
    loop.start(0.001).addBoth(lambda _: done.callback(None))
    return done


def slow(out, data, **kwargs):
    time.sleep(data)  # sleep-ok: a slow handler is the behaviour under test
    out.send("slept")


def nap(out, data, **kwargs):
    out.send("started")
    time.sleep(data)  # sleep-ok: a stream still running at shutdown
    out.send("slept")


def in_process(out, data, **kwargs):
    import os

    out.send(os.getpid())
    out.send(data)


def in_process_boom(out, data, **kwargs):
    out.send("partial")
    raise RuntimeError("worker says no")


class Worker(IgorProcess):
    """A thread process: forwards what the inbox receives to one client."""

    def __init__(self):
        IgorProcess.__init__(self)
        self.inbox = queue.Queue()

    def run(self):
        while True:
            item = self.inbox.get()
            self.output.send(
                "from_thread",
                {
                    "pid": self.process_id,
                    "scope": sorted(self.scope),
                    "item": item["data"],
                },
                client_id=item["to"],
            )


def pusher(output):
    OUTPUTS["pusher"] = output
    loop = task.LoopingCall(lambda: None)
    loop.start(60)
    return loop


WORKER = Worker()

API = {
    "echo": echo,
    "whoami": whoami,
    "boom": boom,
    "send_error": send_error,
    "three": three,
    "session": {"set": session_set, "get": session_get},
    "scope_add": scope_add,
    "sessions_has": sessions_has,
    "broadcast": broadcast,
    "direct": direct,
    "via_thread": via_thread,
    "shutdown": shutdown,
    "slow": slow,
    "nap": nap,
}

bridge = Bridge()
bridge.igor_actions(API)
bridge.igor_action("flood", flood, run_in="reactor")
bridge.igor_action("in_process", in_process, run_in="process")
bridge.igor_action("in_process_boom", in_process_boom, run_in="process")
bridge.igor_process("worker", WORKER)
bridge.igor_process("pusher", pusher)

FLOODS = {"sent": 0, "ended": 0}


def flood_thread(out, data, **kwargs):
    """From a pool thread: send 128 KiB messages until the client is cut off."""
    chunk = "y" * 128 * 1024
    try:
        while True:
            out.send(chunk)
            FLOODS["sent"] += 1
    except StreamClosedError:
        FLOODS["ended"] += 1


def flood_status(out, data, **kwargs):
    out.send(dict(FLOODS))


small = Bridge(max_message_size="1M")
small.igor_action("flood", flood, run_in="reactor")
small.igor_action("flood_thread", flood_thread)
small.igor_action("flood_status", flood_status)
small.igor_action("echo", echo)


def deferred_three(out, data, **kwargs):
    """A plain function returning a Deferred (registered run_in='reactor')."""
    d = Deferred()
    calls = iter(range(3))

    def step():
        i = next(calls, None)
        if i is None:
            d.callback(None)
            return
        out.send(i)
        reactor.callLater(0.01, step)

    reactor.callLater(0.01, step)
    return d


bridge.igor_action("deferred_three", deferred_three, run_in="reactor")
