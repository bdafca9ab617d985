"""
The JSON-lines wire format on `twistd bridge`: the whole flow over a raw
socket; the limits and timeouts in memory, on the test clock.
"""

import pytest

from twistbridge import Bridge
from twistbridge.bgpy._core import RECEIVE_PAUSE
from twistbridge.testing import BridgeTestClient


def ok(message):
    return {"type": "OK", "args": {"message": message}}


def error(message):
    return {"type": "ERROR", "args": {"message": message}}


@pytest.fixture
def server(bridge_process):
    return bridge_process(["--app", "bgpy_app:bridge"], BGPY_TOKEN="json-token")


def test_flow(server, raw):
    r = raw(server.port("bgpy"))
    # Nothing but AUTH before AUTH.
    r.json("EXEC", command="get")
    assert r.line() == error("Not authenticated: send AUTH first.")
    r.json("AUTH", token="json-token")
    assert r.line() == ok("Received 'AUTH'")
    assert r.line() == ok("Authentication successful.")
    # init_task ran at service start.
    r.json("INIT")
    assert r.line() == ok("Received 'INIT'")
    assert r.line() == error("Already initialized.")
    r.json("EXEC", command="increase", value_change=5)
    assert r.line() == ok("Received 'EXEC'")
    r.json("EXEC", command="get", await_response=True)
    assert r.line() == ok("Received 'EXEC'")
    assert r.line() == {"type": "OK", "args": {"request_count": 2, "value": 1005}}
    r.json("EXEC", command="fail", await_response=True)
    assert r.line() == ok("Received 'EXEC'")
    assert r.line() == error("exec_task failed: ValueError: asked to fail")
    # Broken input answers an error; the connection stays usable.
    r.send(b'{"type": "EXEC", "args": \n')
    assert r.line()["args"]["message"].startswith("Invalid JSON:")
    r.send(b"[1, 2]\n")
    assert r.line() == error("A message must be a JSON object with 'type' and 'args'.")
    r.json("PING")
    assert r.line() == error(
        "Unknown message type 'PING': expected one of AUTH, INIT, EXEC, EXIT."
    )
    r.send(b'{"type": "EXEC", "args": [1]}\n')
    assert r.line() == error("'args' must be a JSON object.")
    r.json("OK")
    assert r.line() == error(
        "Unknown message type 'OK': expected one of AUTH, INIT, EXEC, EXIT."
    )
    # Pipelined messages are answered in order.
    r.send(
        b'{"type": "EXEC", "args": {"command": "sleep", "seconds": 0.2, "await_response": true}}\n'
        b'{"type": "EXEC", "args": {"command": "get", "await_response": true}}\n'
    )
    assert r.line() == ok("Received 'EXEC'")
    assert r.line() == {"type": "OK", "args": {"slept": 0.2}}
    assert r.line() == ok("Received 'EXEC'")
    assert r.line() == {"type": "OK", "args": {"request_count": 5, "value": 1005}}
    # EXIT runs exit_task and resets the state; INIT runs init_task again.
    r.json("EXIT", await_response=True)
    assert r.line() == ok("Received 'EXIT'")
    assert r.line() == {
        "type": "OK",
        "args": {"request_count": 6, "value": 1005, "status": "Exited."},
    }
    r.json("EXEC", command="get")
    assert r.line() == error("Not initialized.")
    r.json("INIT")
    assert r.line() == ok("Received 'INIT'")
    assert r.line() == ok("Initialization successful.")
    r.json("EXEC", command="get", await_response=True)
    assert r.line() == ok("Received 'EXEC'")
    assert r.line() == {"type": "OK", "args": {"request_count": 1, "value": 1000}}


def test_wrong_token_closes(server, raw):
    r = raw(server.port("bgpy"))
    r.json("AUTH", token="nope")
    assert r.line() == ok("Received 'AUTH'")
    assert r.line() == error("Invalid client authentication.")
    assert r.closed()


def test_many_clients_each_in_order(server, raw):
    clients = [raw(server.port("bgpy")) for _ in range(10)]
    for c in clients:
        c.json("AUTH", token="json-token")
    for c in clients:
        assert c.line() == ok("Received 'AUTH'")
        assert c.line() == ok("Authentication successful.")
    for _ in range(5):
        for c in clients:
            c.json("EXEC", command="increase", value_change=1)
    for c in clients:
        for _ in range(5):
            assert c.line() == ok("Received 'EXEC'")
    clients[0].json("EXEC", command="get", await_response=True)
    assert clients[0].line() == ok("Received 'EXEC'")
    assert clients[0].line() == {
        "type": "OK",
        "args": {"request_count": 51, "value": 1050},
    }


def memory(**settings):
    import bgpy_tasks

    app = Bridge(**settings)
    app.bgpy_tasks(bgpy_tasks.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task)
    return BridgeTestClient(app)


def test_line_limit():
    with memory(max_message_size=1024) as client:
        line = client.bgpy("json")
        line.send_raw(b'{"type": "EXEC", "args": {"x": "' + b"a" * 2000)
        assert line.answers == [error("Line exceeds the limit of 1024 bytes.")]
        assert line.closed
        # A bgpy frame over the limit is refused from its header.
        frame = client.bgpy("bgpy")
        frame.send_raw(b"1025            ")
        client.advance(RECEIVE_PAUSE)  # the pause bgpy's format keeps after a frame
        assert frame.answers == [
            error("Message of 1025 bytes exceeds the limit of 1024 bytes.")
        ]
        assert frame.closed


@pytest.mark.parametrize(
    "wire, start", [("json", b'{"type": "EXEC"'), ("bgpy", b"100             QUJD")]
)
def test_slow_message_times_out(wire, start):
    with memory(message_timeout=0.5) as client:
        conn = client.bgpy(wire)
        conn.send_raw(start)
        client.advance(0.499)
        assert conn.answers == [] and not conn.closed
        client.advance(0.001)
        if wire == "bgpy":
            assert conn.answers == []
            client.advance(RECEIVE_PAUSE)  # the pause bgpy's format keeps after a frame
        assert conn.answers == [error("Message incomplete after 0.5 s.")]
        client.advance(1)
        assert conn.closed
