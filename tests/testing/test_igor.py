"""Igor WebSockets through the in-memory client."""

import pytest

from twistbridge import Bridge
from twistbridge.testing import BridgeTestClient


def test_stream_and_error(bridge_client):
    ws = bridge_client.igor()
    assert ws.status == 101 and ws.opened
    assert ws.call("echo", {"a": 1}) == [
        {"streamId": "1", "data": {"a": 1}},
        {"streamId": "1", "close": True},
    ]
    assert ws.call("count", 3) == [
        {"streamId": "2", "data": 0},
        {"streamId": "2", "data": 1},
        {"streamId": "2", "data": 2},
        {"streamId": "2", "close": True},
    ]
    assert ws.call("boom", 7) == [
        {"streamId": "3", "data": "before"},
        {"streamId": "3", "error": "ValueError: boom: 7"},
        {"streamId": "3", "close": True},
    ]
    assert ws.messages() == []


def test_protocol_errors(bridge_client):
    ws = bridge_client.igor()
    ws.send_raw("not json")
    ws.send("no_such_action")
    assert ws.messages() == [
        {"error": "Message is not valid JSON", "code": 400},
        {"error": 'No handler for action: "no_such_action"', "code": 400},
    ]


def test_standalone_port(bridge_client):
    ws = bridge_client.igor(standalone=True)
    assert ws.call("echo", "x") == [
        {"streamId": "1", "data": "x"},
        {"streamId": "1", "close": True},
    ]


def test_process_pushes_on_the_test_clock(bridge_client):
    one, two = bridge_client.igor(), bridge_client.igor()
    bridge_client.advance(4.9)
    assert one.messages() == []
    bridge_client.advance(0.1)
    tick = {"streamId": "ticker", "action": "tick", "data": 1}
    assert one.messages() == [tick]
    assert two.messages() == [tick]
    bridge_client.advance(10)
    assert [m["data"] for m in one.messages()] == [2, 3]


def test_send_to_one_client(bridge_client):
    one, two = bridge_client.igor(), bridge_client.igor()
    (me,) = [m["data"] for m in two.call("whoami") if "data" in m]
    one.call("tell", {"to": me, "note": "hello"})
    assert two.messages() == [{"streamId": "ticker", "action": "note", "data": "hello"}]
    assert one.messages() == []


def test_reconnect_takes_the_session_over_within_the_window(bridge_client):
    ws = bridge_client.igor()
    ws.send("introduce_self", {"client_id": "alice"})
    ws.call("remember", "kept")
    ws.drop()
    bridge_client.advance(9)
    again = bridge_client.igor()
    again.send("introduce_self", {"client_id": "alice"})
    assert again.call("recall")[0] == {"streamId": "2", "data": "kept"}
    again.drop()
    bridge_client.advance(10.5)
    late = bridge_client.igor()
    late.send("introduce_self", {"client_id": "alice"})
    assert late.call("recall")[0] == {"streamId": "2", "data": None}


def test_origin_refused():
    with BridgeTestClient(Bridge()) as client:
        refused = client.igor(origin="http://evil.example")
        assert (refused.status, refused.opened) == (403, False)
        allowed = client.igor(origin="http://127.0.0.1:5020")
        assert (allowed.status, allowed.opened) == (101, True)


def test_close_on_shutdown(bridge_client):
    ws = bridge_client.igor()
    bridge_client.close()
    assert (ws.closed, ws.close_code) == (True, 1001)
    with pytest.raises(LookupError):
        ws.receive()
