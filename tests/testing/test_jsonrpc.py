"""JSON-RPC through the in-memory client, and flaskJSONRPCServer's extras."""

import os
import sys

import pytest

from twistbridge.testing import BridgeTestClient, RpcError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "apps"))


def test_call_and_error(bridge_client):
    assert bridge_client.rpc("add", 1, 2) == 3
    assert bridge_client.rpc("add", a="x", b="y") == "xy"
    with pytest.raises(RpcError) as error:
        bridge_client.rpc("nope")
    assert (error.value.code, error.value.message) == (-32601, "Method not found")


def test_notification_and_batch(bridge_client):
    answer = bridge_client.notify("add", 1, 2)
    assert (answer.status, answer.body) == (204, b"")
    got = bridge_client.batch(
        [
            ("add", [1, 2]),
            {"jsonrpc": "2.0", "method": "add", "params": [3, 4]},
            ("add", [5, 6]),
        ]
    )
    assert [m["result"] for m in got] == [3, 11]


def test_process_handler_is_pickled(bridge_client):
    pid, value = bridge_client.rpc("pid_plus", 1)
    assert (pid, value) == (os.getpid(), 2)  # inline: in this process
    with pytest.raises(RpcError) as error:
        bridge_client.rpc("unpicklable_result")
    assert "cannot be sent back from a worker process" in error.value.message


def test_process_handler_in_a_real_process(bridge_client_factory):
    client = bridge_client_factory(real_pools=True)
    pid, value = client.rpc("pid_plus", 41)
    assert value == 42
    assert pid != os.getpid()


@pytest.fixture
def features():
    import jsonrpc_features_app

    with BridgeTestClient(jsonrpc_features_app.bridge) as client:
        yield client


def test_connection_object(features):
    body = {"jsonrpc": "2.0", "method": "whoami", "id": 1}
    got = features.rpc_request(body, headers={"X-Test": "kit", "Cookie": "a=b"}).json()
    assert got["result"] == {
        "ip": "127.0.0.1",
        "agent": "kit",
        "cookies": {"a": "b"},
        "path": "/rpc",
        "method": "whoami",
        "has_server": True,
    }


def test_cors_preflight(features):
    pre = features.http(
        "OPTIONS",
        "/api",
        headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre.status == 204
    assert pre.header("Access-Control-Allow-Origin") == "*"
    assert pre.header("Access-Control-Allow-Methods") == "GET, POST, OPTIONS"


def test_jsonp(features):
    got = features.http("GET", "/api/add?a=2&b=3&jsonp=cb_1")
    assert got.header("Content-Type") == "application/javascript"
    assert got.body == b"cb_1(5);"


def test_auth(features):
    call = {"jsonrpc": "2.0", "method": "secret", "id": 1}
    denied = features.rpc_request(call, "/secure")
    assert denied.status == 403
    assert denied.json()["error"] == {"code": -32001, "message": "Forbidden"}
    allowed = features.rpc_request(call, "/secure", {"Authorization": "Bearer good"})
    assert allowed.json()["result"] == 42
