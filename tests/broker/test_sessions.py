"""
Sessions across two `twistd bridge` instances sharing one real
redis-server: a client that leaves one instance and introduces itself to
the other within the takeover window gets its session there, by name or
with its resume token, claimed by one instance only.
"""

import json

import pytest

from twistbridge.testing import wait_for

from .conftest import holder_of, start_instances, started_redis, ws

pytestmark = pytest.mark.one_worker


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """
    Two instances (the default takeover mode) on a redis-server of their
    own, shared by the tests of that mode: each test has client ids of its
    own, so none sees another's sessions.
    """
    redis = started_redis(tmp_path_factory.mktemp("sessions-redis"))
    started = []
    try:
        yield redis, start_instances(redis, started)
    finally:
        for instance in started:
            instance.stop()
        redis.kill()


def introduce(listener, client_id, token=None):
    data = {"client_id": client_id}
    if token is not None:
        data["resume_token"] = token
    listener.request("introduce_self", data, stream="intro")


def left_record(redis_server, client_id):
    """Wait for the leaving instance to write the session's record."""
    key = f"twistbridge:0:igor:session:{json.dumps(client_id)}"
    wait_for(
        lambda: redis_server.command("EXISTS", key) == b":1",
        10,
        what="the session's record in Redis",
    )
    return key


def test_a_session_follows_its_client_to_the_other_instance(pair, listen):
    redis_server, (a, b) = pair
    first = listen(ws(a))
    introduce(first, "alice")
    assert first.call("remember", "on a", stream="r1") == [["on a"]]
    first.close()
    key = left_record(redis_server, "alice")
    # It expires with the takeover window (10 s).
    assert 0 < int(redis_server.command("PTTL", key)[1:]) <= 10000

    # Messages right behind the introduction wait for its claim.
    second = listen(ws(b))
    introduce(second, "alice")
    assert second.call("recall", stream="r2") == [{"notes": ["on a"]}]
    assert second.call("whoami", stream="w")[0] == {
        "client_id": "alice",
        "pid": b.process.pid,
    }
    assert second.errors() == []
    # Claimed: the record is gone, the name is b's everywhere.
    assert redis_server.command("EXISTS", key) == b":0"
    third = listen(ws(a))
    introduce(third, "alice")
    assert third.call("recall", stream="r3") == [{}]
    assert third.errors() == [
        {"error": 'Client id "alice" is already connected', "code": 400}
    ]

    # Back to a, with what b added: b's copy, not the one a kept.
    assert second.call("remember", "on b", stream="r4") == [["on a", "on b"]]
    second.close()
    left_record(redis_server, "alice")
    fourth = listen(ws(a))
    introduce(fourth, "alice")
    assert fourth.call("recall", stream="r5") == [{"notes": ["on a", "on b"]}]
    assert fourth.call("whoami", stream="w")[0]["pid"] == a.process.pid


def test_sends_in_the_gap_raise_and_reach_the_client_after(pair, listen):
    redis_server, instances = pair
    holder, other = holder_of(instances)
    sender = listen(ws(holder))  # (the relay process sends from its holder)
    first = listen(ws(holder))
    introduce(first, "bob")
    first.call("recall", stream="r")
    first.close()
    left_record(redis_server, "bob")
    # Gone until it is back: unknown, as on one instance.
    assert sender.call("direct", {"to": "bob", "text": "x"}, stream="g") == [
        'unknown: No client with given id exists. Id="bob"'
    ]
    second = listen(ws(other))
    introduce(second, "bob")
    second.call("recall", stream="r")
    counter = iter(range(1000))
    wait_for(
        lambda: (
            sender.call(
                "direct", {"to": "bob", "text": "hi"}, stream=f"d{next(counter)}"
            )
            == ["sent"]
        ),
        10,
        what="a send to bob on the other instance",
    )
    wait_for(
        lambda: [m["data"] for m in second.of("relay", "direct")] == ["hi"],
        10,
        what="bob to get it there",
    )


def test_one_claim_wins(pair, listen):
    redis_server, (a, b) = pair
    first = listen(ws(a))
    introduce(first, "carol")
    first.call("remember", "mine", stream="r")
    first.close()
    left_record(redis_server, "carol")
    here, there = listen(ws(a)), listen(ws(b))
    introduce(here, "carol")
    introduce(there, "carol")
    sessions = [here.call("recall", stream="r")[0], there.call("recall", stream="r")[0]]
    errors = here.errors() + there.errors()
    assert sorted(sessions, key=len) == [{}, {"notes": ["mine"]}]
    assert errors == [{"error": 'Client id "carol" is already connected', "code": 400}]


def test_token_mode_needs_the_token_on_the_other_instance(
    instances, listen, redis_server
):
    a, b = instances(2, extra=["--igor-takeover", "token"])
    first = listen(ws(a))
    first.token(1)
    introduce(first, "dave")
    token = first.token(2)
    assert token["client_id"] == "dave"
    first.call("remember", "secret", stream="r")
    first.close()
    key = left_record(redis_server, "dave")

    thief = listen(ws(b))
    introduce(thief, "dave")
    introduce(thief, "dave", token="not-the-token")
    assert thief.call("recall", stream="r") == [{}]
    refusal = (
        'Client id "dave" belongs to a session awaiting its client: '
        "resuming it needs its resume_token"
    )
    assert thief.errors() == [{"error": refusal, "code": 403}] * 2
    assert redis_server.command("EXISTS", key) == b":1"

    owner = listen(ws(b))
    introduce(owner, "dave", token=token["resume_token"])
    assert owner.call("recall", stream="r") == [{"notes": ["secret"]}]
    assert owner.errors() == []
    # A new token, from b, for the next move.
    fresh = owner.token(2)
    assert fresh["client_id"] == "dave" and fresh["resume_token"] != token


def test_a_session_json_cannot_carry_stays_on_its_instance(pair, listen):
    a, b = pair[1]
    first = listen(ws(a))
    introduce(first, "erin")
    assert first.call("keep_object", stream="k") == ["kept"]
    first.close()
    wait_for(
        lambda: "its session is not plain JSON" in a.output, 10, what="the warning"
    )
    second = listen(ws(b))
    introduce(second, "erin")
    assert second.call("recall", stream="r") == [{}]
    assert second.errors() == []
    assert a.output.count("its session is not plain JSON") == 1
