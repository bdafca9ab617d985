"""
Presence renewal: one script per batch of clients (one round trip), not one
command per client; on a stand-in for Redis, then over a real redis-server.
"""

from twisted.internet import task

from twistbridge.config import parse_broker
from twistbridge.igor import _redis
from twistbridge.igor._redis import PRESENCE_BATCH, RedisBroker
from twistbridge.testing import wait_for

from .conftest import StalledRedis


def test_presence_is_renewed_in_one_round_trip_per_batch():
    clock = task.Clock()
    broker = RedisBroker(parse_broker("redis://127.0.0.1/0"), reactor=clock)
    broker._commands = StalledRedis()
    broker.local = set(range(PRESENCE_BATCH + 5))
    broker._presence_tick()
    keys = [f"twistbridge:0:igor:client:{i}" for i in sorted(broker.local)]
    ((name, args, kwargs, d),) = broker._commands.calls
    assert (name, args, kwargs) == (
        "eval",
        (_redis._PRESENT, keys[:PRESENCE_BATCH], [broker.instance, "15"]),
        {},
    )
    d.callback(PRESENCE_BATCH)
    name, args, kwargs, d = broker._commands.calls[-1]
    assert len(broker._commands.calls) == 2
    assert args == (_redis._PRESENT, keys[PRESENCE_BATCH:], [broker.instance, "15"])
    d.callback(5)


def test_a_presence_key_lost_is_set_again(instances, listen, redis_server):
    (instance,) = instances(1)
    clients = [listen(instance.url("/ws", scheme="ws")) for _ in range(3)]
    ids = [c.call("whoami", stream="w")[0]["client_id"] for c in clients]
    keys = [f"twistbridge:0:igor:client:{i}" for i in ids]
    owner = instance.health()["broker"]["instance"].encode()
    assert [redis_server.command("GET", k) for k in keys] == [owner] * 3
    assert redis_server.command("DEL", *keys) == b":3"
    # The next renewal (every 5 s) sets all three again, with their expiry.
    wait_for(
        lambda: [redis_server.command("GET", k) for k in keys] == [owner] * 3,
        15,
        what="the presence keys renewed",
    )
    for key in keys:
        ttl = int(redis_server.command("TTL", key)[1:])
        assert 0 < ttl <= 15
