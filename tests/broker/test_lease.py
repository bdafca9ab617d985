"""
The lease's timing, on a task.Clock with a stand-in for Redis's replies: a
holder whose renewals go unanswered stops the process before Redis can have
let the lease expire.  (The same over real sockets: test_redis.py.)
"""

from twisted.internet import task

from twistbridge.config import parse_broker
from twistbridge.igor._redis import RedisBroker

from .conftest import StalledRedis


def broker_on(clock):
    broker = RedisBroker(
        parse_broker("redis://127.0.0.1/0"), reactor=clock, monotonic=clock.seconds
    )
    broker._commands = StalledRedis()
    events = []
    broker.run_processes(
        ["p"],
        lambda pid: events.append(("start", pid)),
        lambda pid: events.append(("stop", pid)),
    )
    return broker, events


def test_a_holder_that_cannot_renew_stops_before_the_expiry():
    clock = task.Clock()
    broker, events = broker_on(clock)
    ((name, args, kwargs, d),) = broker._commands.calls
    assert (name, args, kwargs) == (
        "set",
        ("twistbridge:0:igor:lease:p", broker.instance),
        {"pexpire": 3000, "only_if_not_exists": True},
    )
    clock.advance(0.2)  # Redis answers 0.2 s later: its expiry runs from then
    d.callback("OK")
    assert events == [("start", "p")] and broker.holds("p")
    # Renewals every half second, none answered.
    while clock.seconds() < 2.49:
        clock.advance(0.5)
        broker._lease_tick()
        if not broker.holds("p"):
            break
    assert events == [("start", "p"), ("stop", "p")]
    # Stopped at the first tick past 2.5 s (the lease's 3 s from its request,
    # less a margin), before the 3.2 s at which Redis would let it go.
    assert round(clock.seconds(), 3) == 2.7
    assert not broker.holds("p")
    assert broker.status()["processes"] == []


def test_a_renewal_refused_stops_at_once():
    clock = task.Clock()
    broker, events = broker_on(clock)
    broker._commands.calls[0][3].callback("OK")
    clock.advance(0.5)
    broker._lease_tick()
    name, args, _, renewal = broker._commands.calls[-1]
    assert (name, args[1:]) == (
        "eval",
        (["twistbridge:0:igor:lease:p"], [broker.instance, "3000"]),
    )
    renewal.callback(0)  # the key is another instance's now, or gone
    assert events == [("start", "p"), ("stop", "p")]
    assert not broker.holds("p")


def test_a_lease_not_taken_starts_nothing():
    clock = task.Clock()
    broker, events = broker_on(clock)
    broker._commands.calls[0][3].callback(None)  # NX: another instance has it
    assert events == [] and not broker.holds("p")
