"""
bgpy across two `twistd bridge --broker` instances sharing a real
redis-server: one instance (the bgpy lease's holder) runs the tasks, the
other forwards; the real bgpy Client and JSON lines on real sockets.
"""

import json
import socket
import sys
import threading
import time

import bgpy
import pytest

from twistbridge.testing import BridgeProcess, wait_for

from ..conftest import APPS, apps_environ
from .conftest import started_redis

if APPS not in sys.path:
    sys.path.insert(0, APPS)

import bgpy_tasks  # noqa: E402
import bgpy_unstorable  # noqa: E402

TASKS = (bgpy_tasks.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task)
UNSTORABLE = (
    bgpy_unstorable.init_task,
    bgpy_unstorable.exec_task,
    bgpy_unstorable.exit_task,
)
UNAVAILABLE = (
    "Broker unavailable: the bgpy state cannot be confirmed in Redis now; try again."
)
ACK = {"type": "OK", "args": {"message": "Received 'EXEC'"}}
STATE = "twistbridge:0:bgpy:state"
# What a pair stores once A has run the app's init_task.
FRESH = {
    "initialized": True,
    "tasks": None,
    "state": {"request_count": 0, "value": 1000},
}


def second(**args):
    return {**args, "await_response": False}


class BgpyInstance(BridgeProcess):
    """tests/apps/bgpy_app.py under `twistd -n bridge --broker ...`."""

    def __init__(self, broker):
        BridgeProcess.__init__(
            self,
            [
                "--app",
                "bgpy_app:bridge",
                "--broker",
                broker,
                "--bgpy-allow-module",
                "bgpy_unstorable",
            ],
            env=apps_environ(),
        )

    def health(self):
        import requests

        return requests.get(self.url("/health"), timeout=5).json()

    def holder(self):
        try:
            return self.health()["broker"]["bgpy"]["holder"]
        except OSError:
            return False


class Lines:
    """A JSON-lines bgpy connection."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")

    def send(self, kind, **args):
        line = json.dumps({"type": kind, "args": args}).encode() + b"\n"
        self.sock.sendall(line)

    def read(self):
        line = self.file.readline()
        assert line, "connection closed"
        return json.loads(line)

    def close(self):
        self.sock.close()


def real(instance):
    return bgpy.Client(
        "127.0.0.1", instance.port("bgpy"), token=None, log_level="CRITICAL"
    )


def start(redis_server, started):
    instance = BgpyInstance(redis_server.url).start()
    started.append(instance)
    wait_for(
        lambda: instance.health()["status"] == "ok", 15, what="the broker connected"
    )
    return instance


def holder_first(redis_server, started):
    """Instance A (the holder, init_task run), then B (forwarding)."""
    a = start(redis_server, started)
    wait_for(a.holder, 15, what="A to take the bgpy lease")
    b = start(redis_server, started)
    return a, b


def stop_all(started):
    for instance in started:
        instance.stop()


def init_with_app_tasks(instance):
    """INIT through C{instance} over JSON lines, with the tasks of the app's
    own init: both answers exact."""
    lines = Lines(instance.port("bgpy"))
    lines.send("INIT")
    assert lines.read() == {"type": "OK", "args": {"message": "Received 'INIT'"}}
    assert lines.read() == {
        "type": "OK",
        "args": {"message": "Initialization successful."},
    }
    lines.close()


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory):
    """
    A redis-server, A (the holder) and B, for the tests that neither kill
    an instance nor stop Redis.
    """
    redis_server = started_redis(tmp_path_factory.mktemp("bgpy-redis"))
    started = []
    try:
        a, b = holder_first(redis_server, started)
        yield redis_server, a, b
    finally:
        stop_all(started)
        redis_server.kill()


@pytest.fixture
def pair(shared_pair):
    """
    The shared pair as a new one is: EXIT (when initialized), then INIT
    with the app's own tasks through A, and A still the holder.
    """
    redis_server, a, b = shared_pair
    if json.loads(redis_server.command("GET", STATE))["initialized"]:
        real(a).terminate(await_response=True)
    init_with_app_tasks(a)
    assert json.loads(redis_server.command("GET", STATE)) == FRESH
    assert (a.holder(), b.holder()) == (True, False)
    return shared_pair


@pytest.mark.one_worker
def test_a_client_on_either_instance_sees_one_state(pair):
    redis_server, a, b = pair
    assert (a.holder(), b.holder()) == (True, False)
    for instance, holder in ((a, True), (b, False)):
        broker = instance.health()["broker"]
        assert broker["bgpy"] == {"up": True, "holder": holder}
        assert broker["processes"] == []
    on_a = real(a)
    for _ in range(3):
        assert on_a.execute({"command": "increase", "value_change": 10}) == {
            "message": "Received 'EXEC'"
        }
    on_b = real(b)
    assert on_b.execute({"command": "get"}, await_response=True) == second(
        request_count=4, value=1030
    )
    # Already initialized, wherever INIT arrives.
    assert on_b.initialize(*TASKS) == second(message="Already initialized.")
    lines = Lines(b.port("bgpy"))
    lines.send("EXEC", command="decrease", value_change=5)
    assert lines.read() == ACK
    lines.send("EXEC", command="get", await_response=True)
    assert lines.read() == ACK
    assert lines.read() == {
        "type": "OK",
        "args": {"request_count": 6, "value": 1025},
    }
    lines.send("EXEC", command="fail", await_response=True)
    assert lines.read() == ACK
    assert lines.read() == {
        "type": "ERROR",
        "args": {"message": "exec_task failed: ValueError: asked to fail"},
    }
    lines.close()
    # The state is in Redis: what the holder wrote, as JSON.
    record = json.loads(redis_server.command("GET", STATE))
    assert record == {
        "initialized": True,
        "tasks": None,
        "state": {"request_count": 6, "value": 1025},
    }
    # EXIT through B, INIT again through A with the client's own tasks.
    assert on_b.terminate(await_response=True) == second(
        request_count=7, value=1025, status="Exited."
    )
    assert on_a.initialize(*TASKS) == second(message="Initialization successful.")
    assert on_b.execute({"command": "get"}, await_response=True) == second(
        request_count=1, value=1000
    )


@pytest.mark.one_worker
def test_a_state_that_cannot_be_stored_is_refused_at_init(pair):
    redis_server, a, b = pair
    on_b = real(b)
    assert on_b.terminate(await_response=True) == second(
        request_count=1, value=1000, status="Exited."
    )
    message = (
        "The state cannot be stored in the broker: it is not JSON (TypeError: "
        "Object of type set is not JSON serializable); with --broker, "
        "init_task must return JSON values."
    )
    assert on_b.initialize(*UNSTORABLE) == second(message=message)
    # Nothing stored: still uninitialized, everywhere.
    assert json.loads(redis_server.command("GET", STATE)) == {
        "initialized": False,
        "tasks": None,
        "state": None,
    }
    init_with_app_tasks(a)


class Sender:
    """
    A thread sending EXEC increase 1 (no second response) over JSON lines,
    one after the other, counting the acknowledged ones and the errors.
    """

    def __init__(self, port):
        self.lines = Lines(port)
        self.acked = 0
        self.errors = []
        self.acked_at = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.lines.send("EXEC", command="increase", value_change=1)
            answer = self.lines.read()
            if answer == ACK:
                self.acked += 1
                self.acked_at.append(time.monotonic())
            else:
                self.errors.append(answer)

    def stop(self):
        self.running = False
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.lines.close()


def test_the_holder_killed_mid_run_loses_no_acknowledged_exec(redis_server):
    started = []
    try:
        a, b = holder_first(redis_server, started)
        sender = Sender(b.port("bgpy"))
        wait_for(lambda: sender.acked >= 50, 30, what="50 EXECs through A")
        a.process.kill()  # kill -9: no lease given up, no goodbye
        killed = time.monotonic()
        before = sender.acked
        wait_for(lambda: sender.acked >= before + 50, 30, what="B to take over")
        sender.stop()
        times = sender.acked_at
        gap = max(later - t for t, later in zip(times, times[1:]) if later > killed)
        print(f"failover: acknowledgements paused {gap:.2f} s, errors: {sender.errors}")
        assert b.holder()
        assert set(json.dumps(e) for e in sender.errors) <= {
            json.dumps({"type": "ERROR", "args": {"message": UNAVAILABLE}})
        }
        lines = Lines(b.port("bgpy"))
        lines.send("EXEC", command="get", await_response=True)
        assert lines.read() == ACK
        state = lines.read()["args"]
        lines.close()
        assert state["value"] == 1000 + sender.acked
    finally:
        stop_all(started)


def test_redis_stopped_then_restarted(redis_server):
    started = []
    try:
        a, b = holder_first(redis_server, started)
        lines = Lines(b.port("bgpy"))
        lines.send("EXEC", command="increase", value_change=1)
        assert lines.read() == ACK
        redis_server.kill()
        wait_for(
            lambda: b.health()["status"] == "degraded", 15, what="B to see Redis gone"
        )
        health = b.health()
        assert health["broker"]["bgpy"]["up"] is False
        assert health["broker"]["bgpy"]["reason"].startswith(
            f"Redis at {redis_server.url} unreachable: "
        )
        for instance in (a, b):
            on = Lines(instance.port("bgpy"))
            on.send("EXEC", command="increase", value_change=1)
            assert on.read() == {"type": "ERROR", "args": {"message": UNAVAILABLE}}
            on.close()
        wait_for(lambda: not a.holder(), 15, what="A to stop running the tasks")
        redis_server.start()
        # This Redis kept nothing: the first holder runs init_task again.
        wait_for(lambda: a.holder() or b.holder(), 15, what="a holder again")

        def answered():
            lines.send("EXEC", command="increase", value_change=1)
            return lines.read() == ACK

        wait_for(answered, 15, what="EXECs answered again")
        lines.send("EXEC", command="get", await_response=True)
        assert lines.read() == ACK
        assert lines.read() == {
            "type": "OK",
            "args": {"request_count": 2, "value": 1001},
        }
        lines.close()
    finally:
        stop_all(started)


@pytest.mark.one_worker
def test_a_task_longer_than_the_request_timeout_through_a_forwarding_instance(
    pair,
):
    """
    A 3 s EXEC through B (not the holder): B hears twice a second that the
    holder still has it, so it waits for its answer instead of giving it up
    at 2 s; the state it left is stored, and the next EXEC sees it.
    """
    redis_server, a, b = pair
    on_b = real(b)
    began = time.monotonic()
    assert on_b.execute(
        {"command": "sleep", "seconds": 3}, await_response=True
    ) == second(slept=3)
    assert time.monotonic() - began >= 3.0
    assert on_b.execute({"command": "get"}, await_response=True) == second(
        request_count=2, value=1000
    )
    record = json.loads(redis_server.command("GET", STATE))
    assert record["state"] == {"request_count": 2, "value": 1000}
    assert (a.holder(), b.holder()) == (True, False)
