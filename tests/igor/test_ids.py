"""Client ids, takeover modes and large-message ordering, in the hub (fake connections, a clock)."""

import json

import pytest
from fakes import FakeOffloader, FakeReactor, attach, echo, message
from hypothesis import given, settings
from hypothesis import strategies as st

from twistbridge.igor._core import normalize_client_id, parse_introduction
from twistbridge.igor._hub import Hub
from twistbridge.igor._parse import parse_large
from twistbridge.offload import resolve
from twistbridge.testing import fuzz_examples


def introduce(hub, conn, name):
    hub.receive(conn, message("introduce_self", {"client_id": name}))


def capture(out, data, session, scope, client_id):
    out.send([client_id, dict(session)])


def remember(out, data, session, **kwargs):
    session.update(data)


def make_hub(takeover="name", inline_limit=64 * 1024):
    handlers = {
        "echo": resolve(echo, "reactor"),
        "capture": resolve(capture, "reactor"),
        "remember": resolve(remember, "reactor"),
    }
    return Hub(
        handlers,
        FakeOffloader(),
        reactor=FakeReactor(),
        takeover=takeover,
        inline_limit=inline_limit,
    )


def whoami(hub, conn):
    conn.written.clear()
    hub.receive(conn, message("capture"))
    return conn.written[0]["data"]


@pytest.mark.parametrize("name", [2, "2"])
def test_attacker_naming_itself_the_next_id_shares_nothing(name):
    hub = make_hub()
    attacker = attach(hub)
    assert attacker.client_id == 1
    introduce(hub, attacker, name)
    hub.receive(attacker, message("remember", {"planted": True}))
    victim = attach(hub)
    assert victim.client_id == 3
    assert whoami(hub, victim) == [3, {}]
    assert whoami(hub, attacker) == [2, {"planted": True}]
    assert hub.sessions[3] is not hub.sessions[2]


def test_ids_in_their_takeover_window_are_skipped_then_reused():
    hub = make_hub()
    a = attach(hub)
    introduce(hub, a, "5")
    hub.detach(a)  # session 5 now waits 10 s for its client
    ids = [attach(hub).client_id for _ in range(4)]
    assert ids == [2, 3, 4, 6]
    hub.reactor.advance(10)
    assert 5 not in hub.sessions


def test_string_and_integer_ids_are_one_id():
    hub = make_hub()
    a, b = attach(hub), attach(hub)
    introduce(hub, a, "7")
    assert a.client_id == 7 and 7 in hub.clients and "7" not in hub.clients
    introduce(hub, b, 7)
    assert b.written == [{"error": 'Client id "7" is already connected', "code": 400}]
    assert hub.client("7") is a and hub.client(7) is a


def test_normalize_client_id():
    assert [normalize_client_id(v) for v in ("2", "-3", "0", "02", "-0", "x", 4)] == [
        2,
        -3,
        0,
        "02",
        "-0",
        "x",
        4,
    ]
    assert parse_introduction({"client_id": "x" * 257}).message == (
        "client_id is longer than 256 characters"
    )
    assert (
        parse_introduction({"client_id": 2**70}).message == "client_id is out of range"
    )


def test_name_mode_sends_no_token():
    hub = make_hub("name")
    a = attach(hub)
    introduce(hub, a, "alice")
    assert a.written == [] and hub.tokens == {}


def token_message(conn):
    msg = conn.written.pop(0)
    assert set(msg) == {"streamId", "action", "data"}
    assert (msg["streamId"], msg["action"]) == ("introduce_self", "resume_token")
    assert set(msg["data"]) == {"client_id", "resume_token"}
    return msg["data"]


def test_token_mode_takeover_needs_the_token():
    hub = make_hub("token")
    a = attach(hub)
    assert token_message(a)["client_id"] == 1
    introduce(hub, a, "alice")
    t = token_message(a)
    assert t["client_id"] == "alice" and len(t["resume_token"]) >= 32
    hub.receive(a, message("remember", {"k": 1}))
    hub.detach(a)
    # By name only, or with a wrong token: refused, the session stays put.
    thief = attach(hub)
    token_message(thief)
    for data in (
        {"client_id": "alice"},
        {"client_id": "alice", "resume_token": "guess"},
        {"client_id": "alice", "resume_token": t["resume_token"][:-1] + "?"},
    ):
        hub.receive(thief, message("introduce_self", data))
        assert thief.written.pop() == {
            "error": 'Client id "alice" belongs to a session awaiting its client: '
            "resuming it needs its resume_token",
            "code": 403,
        }
    assert thief.client_id == 2 and whoami(hub, thief) == [2, {}]
    # With it: taken over, and a new token replaces the used one.
    b = attach(hub)
    token_message(b)
    hub.receive(
        b,
        message(
            "introduce_self", {"client_id": "alice", "resume_token": t["resume_token"]}
        ),
    )
    t2 = token_message(b)
    assert t2["client_id"] == "alice" and t2["resume_token"] != t["resume_token"]
    assert whoami(hub, b) == ["alice", {"k": 1}]


def test_token_mode_free_name_needs_no_token():
    hub = make_hub("token")
    a = attach(hub)
    token_message(a)
    introduce(hub, a, "bob")
    assert token_message(a)["client_id"] == "bob" and a.client_id == "bob"


def test_token_expires_with_its_session():
    hub = make_hub("token")
    a = attach(hub)
    token = token_message(a)["resume_token"]
    hub.detach(a)
    hub.reactor.advance(10)
    assert hub.tokens == {} and 1 not in hub.sessions
    b = attach(hub)
    token_message(b)
    hub.receive(b, message("introduce_self", {"client_id": 1, "resume_token": token}))
    assert whoami(hub, b) == [1, {}]  # a fresh session: nothing to resume


def test_unknown_takeover_mode_is_refused():
    with pytest.raises(ValueError, match="takeover must be 'name' or 'token'"):
        make_hub("maybe")


def test_large_message_is_parsed_in_a_thread_and_order_is_kept():
    hub = make_hub(inline_limit=100)
    conn = attach(hub)
    big = message("echo", "x" * 200, stream="a")
    hub.receive(conn, big)
    assert conn.paused == 1 and conn.written == []
    # Messages after it wait for it, even small ones.
    hub.receive(conn, message("echo", "small", stream="b"))
    hub.receive(conn, message("echo", "y" * 300, stream="c"))
    assert conn.written == []
    ((d, func, args, _),) = hub.offloader.pending
    assert func is parse_large
    d.callback(func(*args))
    assert [m.get("data") for m in conn.written] == ["x" * 200, None, "small", None]
    assert conn.paused == 2 and conn.resumed == 1  # paused again for "c"
    d2, func2, args2, _ = hub.offloader.pending[1]
    d2.callback(func2(*args2))
    assert conn.written[-2] == {"streamId": "c", "data": "y" * 300}
    assert conn.resumed == 2


def test_large_message_errors_and_a_failed_parse_call():
    hub = make_hub(inline_limit=10)
    conn = attach(hub)
    hub.receive(conn, b"[" + b"[]," * 20 + b"[]]")
    d, func, args, _ = hub.offloader.pending[0]
    d.callback(func(*args))
    assert conn.written == [{"error": "Message must be a JSON object", "code": 400}]
    hub.receive(conn, message("echo", "z" * 20))
    hub.offloader.pending[1][0].errback(RuntimeError("queue full"))
    assert conn.written[1] == {
        "error": "Server is busy: message not handled, try again later",
        "code": 503,
    }
    assert conn.resumed == conn.paused == 2


def test_parse_large_paths():
    def msg(data):
        return json.dumps({"streamId": 1, "action": "a", "data": data}).encode()

    dense = [[] for _ in range(100_000)]  # over the C parser's budget
    assert parse_large(msg(dense)).data == dense
    assert parse_large(msg("x" * 100_000)).data == "x" * 100_000
    assert parse_large(msg(dense), max_containers=10).message == (
        "Message holds more than 10 arrays and objects"
    )
    assert parse_large(b"[" * 100_000).message == "Message is not valid JSON"
    assert parse_large(b"\xff" * 10).message == "Message is not valid JSON"
    assert parse_large(b"[]," * 100_000).message == "Message is not valid JSON"


def test_refusals_are_logged_once_per_connection(capsys):
    from twisted.logger import globalLogPublisher

    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        hub = make_hub()
        conn = attach(hub)
        for _ in range(50):
            hub.receive(conn, b"{}")
        hub.detach(conn)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    texts = [
        e["log_format"] for e in seen if e.get("log_namespace") == "twistbridge.igor"
    ]
    assert texts == [
        "igor client {client_id}: {code} {message}",
        "igor client {client_id}: {n} more messages refused",
    ]
    assert len(conn.written) == 50


def test_a_pool_refusing_at_once_answers_busy():
    hub = make_hub(inline_limit=60)

    def refuse(*args, **kwargs):
        raise RuntimeError("full")

    hub.offloader.in_thread = refuse
    conn = attach(hub)
    hub.receive(conn, message("echo", "z" * 100))
    hub.receive(conn, message("echo", "small"))
    assert conn.written[0] == {
        "error": "Server is busy: message not handled, try again later",
        "code": 503,
    }
    assert conn.written[1:] == [
        {"streamId": "s", "data": "small"},
        {"streamId": "s", "close": True},
    ]
    assert conn.paused == conn.resumed == 1


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**63), 2**63 - 1).map(str),
        st.text(max_size=21),
    )
)
def test_one_form_per_id(value):
    """Text naming an integer the usual way is that integer; nothing else changes."""
    normal = normalize_client_id(value)
    if isinstance(value, int):
        assert normal == value
    elif isinstance(normal, int):
        assert str(normal) == value
    else:
        assert normal is value
    assert normalize_client_id(str(normal)) == normal or isinstance(normal, str)
