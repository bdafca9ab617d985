"""
The hub's side of sessions shared through a broker, on a stand-in broker
whose answers the test gives: what waits for the broker's answer, what goes
back when the client left meanwhile, and what a failing broker leaves.
(The same across real instances and Redis: tests/broker/test_sessions.py.)
"""

import json

from fakes import FakeOffloader, FakeReactor, attach, message
from twisted.internet import defer

from twistbridge.igor._hub import Hub
from twistbridge.igor._sessions import encode_record, encode_session
from twistbridge.offload import resolve

INSTANCE = "a" * 32
OTHER = "b" * 32


class SharedBroker:
    """A shared broker whose claims wait for the test."""

    shared = True
    instance = INSTANCE

    def __init__(self):
        self.claims = []
        self.stored = []
        self.events = []
        self.on_arrival = None

    def next_id(self):
        return None

    def joined(self, client_id):
        self.events.append(("joined", client_id))

    def left(self, client_id):
        self.events.append(("left", client_id))

    def store_session(self, client_id, record, ttl):
        self.stored.append((client_id, record, ttl))

    def claim_session(self, client_id, token, check_token):
        d = defer.Deferred()
        self.claims.append((client_id, token, check_token, d))
        return d


def recall(out, data, session, client_id, **kwargs):
    out.send([client_id, dict(session)])


def remember(out, data, session, **kwargs):
    session.update(data)


def make_hub(takeover="name"):
    broker = SharedBroker()
    hub = Hub(
        {
            "recall": resolve(recall, "reactor"),
            "remember": resolve(remember, "reactor"),
        },
        FakeOffloader(),
        reactor=FakeReactor(),
        takeover=takeover,
        broker=broker,
    )
    return hub, broker


def introduce(hub, conn, name, token=None):
    data = {"client_id": name}
    if token is not None:
        data["resume_token"] = token
    hub.receive(conn, message("introduce_self", data))


def test_messages_behind_an_introduction_wait_for_the_claim():
    hub, broker = make_hub()
    conn = attach(hub)
    introduce(hub, conn, "zoe")
    hub.receive(conn, message("recall", stream="r1"))
    hub.receive(conn, message("remember", {"k": 2}, stream="r2"))
    hub.receive(conn, message("recall", stream="r3"))
    assert conn.written == [] and conn.paused == 1 and conn.resumed == 0
    ((name, token, check, d),) = broker.claims
    assert (name, token, check) == ("zoe", None, False)
    record = encode_record(OTHER, None, json.dumps({"k": 1}))
    d.callback(["session", record])
    assert [m["data"] for m in conn.written if "data" in m] == [
        ["zoe", {"k": 1}],
        ["zoe", {"k": 2}],
    ]
    assert conn.resumed == 1
    assert broker.events[-2:] == [("left", 1), ("joined", "zoe")]


def test_a_client_gone_while_claiming_gives_the_session_back():
    hub, broker = make_hub()
    conn = attach(hub)
    introduce(hub, conn, "zoe")
    hub.detach(conn)
    record = encode_record(OTHER, None, '{"k":1}')
    broker.claims[0][3].callback(["session", record])
    # The name released, the record stored again for the window.
    assert broker.events[-1] == ("left", "zoe")
    assert broker.stored[-1] == ("zoe", record, 10.0)
    assert "zoe" not in hub.clients


def test_a_broker_that_cannot_answer_leaves_the_local_takeover():
    hub, broker = make_hub()
    first = attach(hub)
    introduce(hub, first, "zoe")
    broker.claims[0][3].callback(["none"])
    hub.receive(first, message("remember", {"k": 1}))
    hub.detach(first)
    assert broker.stored[-1] == ("zoe", encode_record(INSTANCE, None, '{"k":1}'), 10.0)
    second = attach(hub)
    introduce(hub, second, "zoe")
    hub.receive(second, message("recall"))
    broker.claims[1][3].errback(ConnectionError("not connected to Redis"))
    assert second.written[0] == {"streamId": "s", "data": ["zoe", {"k": 1}]}


def test_the_name_taken_elsewhere_drops_the_session_waiting_here():
    hub, broker = make_hub()
    conn = attach(hub)
    introduce(hub, conn, "zoe")
    broker.claims[0][3].callback(["none"])
    hub.detach(conn)
    assert "zoe" in hub.sessions and "zoe" in hub.ids.expiry
    broker.on_arrival("zoe")
    assert "zoe" not in hub.sessions and "zoe" not in hub.ids.expiry


def test_a_refusal_gives_a_claimed_name_back():
    hub, broker = make_hub(takeover="token")
    first = attach(hub)
    token = first.written[0]["data"]["resume_token"]
    introduce(hub, first, "zoe", token)
    broker.claims[0][3].callback(["none"])
    hub.detach(first)  # its session waits here, for its token
    second = attach(hub)
    introduce(hub, second, "zoe", "wrong")
    assert broker.claims[1][:3] == ("zoe", "wrong", True)
    broker.claims[1][3].callback(["none"])  # (Redis lost the copy)
    assert second.written[-1]["code"] == 403
    assert broker.events[-1] == ("left", "zoe")


def test_what_json_cannot_carry_is_not_shared():
    assert encode_session({"a": [1, "x"], "b": None}) == '{"a":[1,"x"],"b":null}'
    assert encode_session({"t": (1, 2)}) is None  # back as a list
    assert encode_session({1: "x"}) is None  # back with a string key
    assert encode_session({"o": object()}) is None
    assert encode_session({"f": float("nan")}) is None
