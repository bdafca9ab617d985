"""
While Redis is away, what an instance publishes for the others waits in a
bounded queue, oldest dropped first, and is published in order once Redis
is back and the instances it knew have subscribed again (two brokers in
this test's reactor, a real redis-server).
"""

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from twistbridge.config import parse_broker
from twistbridge.igor._outbox import Outbox
from twistbridge.igor._redis import RedisBroker


def test_the_bounds_drop_the_oldest():
    box = Outbox(max_messages=3, max_bytes=10)
    for message in (b"aaaa", b"bbbb", b"cc"):
        box.put("c", message)
    assert (len(box), box.size, box.dropped) == (3, 10, 0)
    box.put("c", b"d")  # 11 bytes: the oldest goes
    assert (len(box), box.size, box.dropped) == (3, 7, 1)
    box.put("c", b"e")  # 4 messages: the oldest goes
    assert box.take_all() == [("c", b"cc"), ("c", b"d"), ("c", b"e")]
    assert (len(box), box.size, box.dropped) == (0, 0, 2)


async def until(condition, timeout=20.0, what="a condition"):
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_queued_while_away_published_in_order_once_back(redis_server):
    a = RedisBroker(parse_broker(redis_server.url))
    b = RedisBroker(parse_broker(redis_server.url))
    heard = []
    a.start(lambda payload: None, lambda client_id, payload: False)
    b.start(heard.append, lambda client_id, payload: False)
    try:
        await until(lambda: a.up and b.up, what="both connected")
        b.joined("bee")  # b has a client: a knows b
        await until(lambda: a.remote.get("bee") == b.instance, what="presence")
        a.publish(b"first")
        await until(lambda: heard == [b"first"], what="a broadcast")

        redis_server.kill()
        await until(lambda: not a.up and not b.up, what="both down")
        a.outbox.max_messages = 3
        for n in range(5):
            a.publish(b"m%d" % n)
        status = a.status()
        assert (status["up"], status["queued"], status["dropped"]) == (False, 3, 2)

        redis_server.start()
        await until(lambda: len(heard) == 4, what="the queue published")
        assert heard == [b"first", b"m2", b"m3", b"m4"]
        assert (a.status()["queued"], a.status()["dropped"]) == (0, 2)
        a.publish(b"after")
        await until(lambda: len(heard) == 5, what="a broadcast after")
        assert heard[-1] == b"after"
    finally:
        await a.stop()
        await b.stop()
