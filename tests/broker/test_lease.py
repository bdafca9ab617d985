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


def take(broker, clock):
    """Answer the broker's tries to take the lease: free twice, then taken."""
    for n in range(3):
        name, args, kwargs, d = broker._commands.calls[-1]
        assert (name, args[1:], kwargs) == (
            "eval",
            (["twistbridge:0:igor:lease:p"], [broker.instance, "3000", "01"[n == 2]]),
            {},
        )
        if n == 2:
            return d
        d.callback(2)  # free: taken only if still free a while later
        clock.advance(0.5)
        broker._lease_tick()


def test_a_free_lease_is_taken_once_found_free_for_a_while():
    clock = task.Clock()
    broker, events = broker_on(clock)
    d = take(broker, clock)
    assert round(clock.seconds(), 3) == 1.0 and events == []
    d.callback(1)
    assert events == [("start", "p")] and broker.holds("p")


def test_a_holder_that_cannot_renew_stops_before_the_expiry():
    clock = task.Clock()
    broker, events = broker_on(clock)
    d = take(broker, clock)
    start = clock.seconds()
    clock.advance(0.2)  # Redis answers 0.2 s later: its expiry runs from then
    d.callback(1)
    assert events == [("start", "p")] and broker.holds("p")
    # Renewals every half second, none answered.
    while clock.seconds() - start < 2.49:
        clock.advance(0.5)
        broker._lease_tick()
        if not broker.holds("p"):
            break
    assert events == [("start", "p"), ("stop", "p")]
    # Stopped at the first tick past 2.5 s (the lease's 3 s from its request,
    # less a margin), before the 3.2 s at which Redis would let it go.
    assert round(clock.seconds() - start, 3) == 2.7
    assert not broker.holds("p")
    assert broker.status()["processes"] == []


def test_a_renewal_refused_stops_at_once():
    clock = task.Clock()
    broker, events = broker_on(clock)
    take(broker, clock).callback(1)
    clock.advance(0.5)
    broker._lease_tick()
    name, args, _, renewal = broker._commands.calls[-1]
    assert (name, args[1:]) == (
        "eval",
        (["twistbridge:0:igor:lease:p"], [broker.instance, "3000"]),
    )
    renewal.callback(0)  # another instance's now (Redis lost it: see _RENEW)
    assert events == [("start", "p"), ("stop", "p")]
    assert not broker.holds("p")


def test_a_lease_not_taken_starts_nothing():
    clock = task.Clock()
    broker, events = broker_on(clock)
    broker._commands.calls[0][3].callback(2)
    clock.advance(0.5)
    broker._lease_tick()
    broker._commands.calls[-1][3].callback(0)  # another instance took it
    clock.advance(0.5)
    broker._lease_tick()
    # Found free again: the wait starts anew.
    assert broker._commands.calls[-1][1][2][2] == "0"
    assert events == [] and not broker.holds("p")
