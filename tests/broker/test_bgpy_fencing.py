"""
The bgpy lease's fencing: a holder whose renewals go unanswered stops
running tasks before Redis can have let its lease expire (on a task.Clock),
and the script storing a state refuses a holder that lost its lease, or a
request its requester gave up (on a real redis-server).
"""

import json

from twisted.internet import defer, task

from twistbridge.bgpy._cluster import _STORE, BROKER_UNAVAILABLE, BgpyCluster
from twistbridge.config import parse_broker

from .conftest import StalledRedis


class NoThreads:
    def __init__(self):
        self.calls = []

    def in_thread(self, *args):
        self.calls.append(args)
        return defer.succeed(None)


def test_a_holder_that_cannot_renew_stops_before_the_expiry():
    clock = task.Clock()
    offloader = NoThreads()
    cluster = BgpyCluster(
        parse_broker("redis://127.0.0.1/0"),
        offloader,
        None,
        reactor=clock,
        monotonic=clock.seconds,
    )
    cluster._commands = StalledRedis()
    cluster._lease_tick()
    ((name, args, kwargs, d),) = cluster._commands.calls
    assert (name, args, kwargs) == (
        "set",
        ("twistbridge:0:bgpy:lease", cluster.instance),
        {"pexpire": 3000, "only_if_not_exists": True},
    )
    clock.advance(0.2)  # Redis answers late: its expiry runs from then at most
    d.callback("OK")
    assert cluster.holds()
    for _ in range(4):  # renewals every half second, none answered
        clock.advance(0.5)
        cluster._lease_tick()
        assert cluster.holds()
    assert len(cluster._commands.calls) == 5
    # The lease lasts until 3.0 s at the earliest in Redis (asked for at
    # 0 s): this holder stops half a second before, its margin.
    clock.advance(2.49 - clock.seconds())
    assert cluster.holds()
    clock.advance(0.02)
    assert not cluster.holds()
    cluster._lease_tick()
    assert cluster.status() == {
        "up": False,
        "holder": False,
        "reason": "connecting to Redis",
    }
    served = defer.ensureDeferred(
        cluster._serve({"id": "r", "from": "x", "kind": "exec", "args": {}})
    )
    assert served.result["message"] == BROKER_UNAVAILABLE
    assert offloader.calls == []  # no task ran


def store(redis_server, holder, request_id, state):
    return redis_server.command(
        "EVAL",
        _STORE,
        3,
        "twistbridge:0:bgpy:lease",
        "twistbridge:0:bgpy:state",
        f"twistbridge:0:bgpy:req:{request_id}",
        holder,
        state,
        json.dumps({"ok": True}),
        60,
    )


def test_a_state_is_stored_only_by_the_holder_for_a_live_request(redis_server):
    assert redis_server.command("SET", "twistbridge:0:bgpy:lease", "B") == b"+OK"
    # A stale holder (A) cannot overwrite the state.
    assert store(redis_server, "A", "r1", '{"state": 1}') == b":0"
    assert redis_server.command("GET", "twistbridge:0:bgpy:state") == b"$-1"
    assert store(redis_server, "B", "r2", '{"state": 2}') == b":1"
    assert redis_server.command("GET", "twistbridge:0:bgpy:state") == b'{"state": 2}'
    # A request its requester gave up never stores a state.
    assert (
        redis_server.command(
            "SET", "twistbridge:0:bgpy:req:r3", '{"cancelled": true}', "NX"
        )
        == b"+OK"
    )
    assert store(redis_server, "B", "r3", '{"state": 3}') == b":-1"
    # "=": the answer only, the state as it was.
    assert store(redis_server, "B", "r4", "=") == b":1"
    assert redis_server.command("GET", "twistbridge:0:bgpy:state") == b'{"state": 2}'
    assert redis_server.command("GET", "twistbridge:0:bgpy:req:r4") == b'{"ok": true}'


def test_tasks_named_in_redis_are_checked_against_this_instances_modules():
    import pytest

    from twistbridge import _demo_tasks
    from twistbridge.bgpy._cluster import resolve_tasks
    from twistbridge.bgpy._pickle import RefusedGlobal, TaskPolicy

    refs = [
        f"twistbridge._demo_tasks:{n}" for n in ("init_task", "exec_task", "exit_task")
    ]
    tasks = resolve_tasks(refs, None, TaskPolicy(["twistbridge._demo_tasks"]))
    assert tasks.exec_task is _demo_tasks.exec_task
    with pytest.raises(RefusedGlobal) as refused:
        resolve_tasks(
            ["posix:system"] * 3, None, TaskPolicy(["twistbridge._demo_tasks"])
        )
    assert str(refused.value) == (
        "'posix.system' is not allowed: only plain Python functions may be named "
        "(no builtins, C functions, classes)"
    )


class Answering:
    """Commands answered at once: a publish reaching the holder, a give-up set."""

    _ready = True

    def __init__(self):
        self.calls = []

    def publish(self, channel, text):
        self.calls.append(("publish", channel, text))
        return defer.succeed(1)

    def set(self, key, value, **kwargs):
        self.calls.append(("set", key, value))
        return defer.succeed(True)


def waiting_request(max_wait=None):
    clock = task.Clock()
    cluster = BgpyCluster(
        parse_broker("redis://127.0.0.1/0"),
        NoThreads(),
        None,
        reactor=clock,
        monotonic=clock.seconds,
        max_wait=max_wait,
    )
    cluster._commands = Answering()
    cluster.up = True
    answers = []
    cluster.request("exec", {}, "peer", True).addCallback(answers.append)
    ((_, channel, text),) = cluster._commands.calls
    assert channel == "twistbridge:0:bgpy:requests"
    request_id = json.loads(text)["id"]
    reply = f"twistbridge:0:bgpy:reply:{cluster.instance}".encode()

    def still_there():
        cluster._message(reply, json.dumps({"have": [request_id]}).encode())

    return clock, cluster, answers, request_id, still_there


def test_a_request_the_holder_still_has_is_waited_for():
    clock, cluster, answers, request_id, still_there = waiting_request()
    for _ in range(20):  # 10 s of the holder saying it still has it
        clock.advance(0.5)
        still_there()
    assert answers == [] and round(clock.seconds(), 3) == 10.0
    clock.advance(1.99)
    assert answers == []
    clock.advance(0.02)  # 2 s without a word: given up
    assert answers == [
        {"ok": False, "message": BROKER_UNAVAILABLE, "response": None, "close": False}
    ]
    assert cluster._commands.calls[-1] == (
        "set",
        f"twistbridge:0:bgpy:req:{request_id}",
        json.dumps({"cancelled": True}),
    )


def test_a_request_is_given_up_after_max_wait_however_long_it_is_had():
    clock, cluster, answers, request_id, still_there = waiting_request(max_wait=4.0)
    for _ in range(7):
        clock.advance(0.5)
        still_there()
    assert answers == []
    clock.advance(0.51)
    assert [a["message"] for a in answers] == [BROKER_UNAVAILABLE]
