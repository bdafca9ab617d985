"""bgpy, both wire formats, through the in-memory client."""

import pytest

from twistbridge import Bridge
from twistbridge.testing import BridgeTestClient


def ok(message, **extra):
    return {"type": "OK", "args": {"message": message, **extra}}


@pytest.mark.parametrize("wire", ["json", "bgpy"])
def test_init_exec_exit(bridge_client, wire):
    second = {"await_response": False} if wire == "bgpy" else {}
    bg = bridge_client.bgpy(wire)
    assert bg.call("INIT") == [
        ok("Received 'INIT'"),
        {"type": "ERROR", "args": {"message": "Already initialized.", **second}},
    ]
    assert bg.call("EXEC", command="increase", value_change=5) == [
        ok("Received 'EXEC'")
    ]
    assert bg.call("EXEC", command="get", await_response=True) == [
        ok("Received 'EXEC'"),
        {"type": "OK", "args": {"value": 1005, **second}},
    ]
    assert bg.call("EXIT") == [ok("Received 'EXIT'")]
    assert bridge_client.runtime.bgpy.state() is None
    assert bridge_client.bgpy().call("EXEC", command="get") == [
        {"type": "ERROR", "args": {"message": "Not initialized."}}
    ]


def tasks():
    import testkit_app

    return testkit_app.init_task, testkit_app.exec_task, testkit_app.exit_task


@pytest.mark.parametrize("wire", ["json", "bgpy"])
def test_auth(wire):
    second = {"await_response": False} if wire == "bgpy" else {}
    app = Bridge(bgpy_token="s3cret")
    app.bgpy_tasks(*tasks())
    with BridgeTestClient(app) as client:
        bg = client.bgpy(wire)
        assert bg.call("EXEC", command="get") == [
            {
                "type": "ERROR",
                "args": {"message": "Not authenticated: send AUTH first."},
            }
        ]
        assert bg.call("AUTH", token="s3cret") == [
            ok("Received 'AUTH'"),
            ok("Authentication successful.", **second),
        ]
        wrong = client.bgpy(wire)
        assert wrong.call("AUTH", token="nope") == [
            ok("Received 'AUTH'"),
            {
                "type": "ERROR",
                "args": {"message": "Invalid client authentication.", **second},
            },
        ]
        assert wrong.closed


def test_incomplete_frame_times_out_on_the_clock(bridge_client):
    bg = bridge_client.bgpy("bgpy")
    bg.send_raw(b"100             abc")  # announces 100 bytes, sends 3
    bridge_client.advance(29.9)
    assert bg.answers == [] and not bg.closed
    bridge_client.advance(0.2)
    assert bg.answers[0] == {
        "type": "ERROR",
        "args": {"message": "Message incomplete after 30 s."},
    }
    bridge_client.advance(1)
    assert bg.closed


def test_bad_json_line_is_answered(bridge_client):
    bg = bridge_client.bgpy()
    bg.send_raw(b"{not json\n")
    (answer,) = bg.answers
    assert answer["type"] == "ERROR"
    assert answer["args"]["message"].startswith("Invalid JSON")
