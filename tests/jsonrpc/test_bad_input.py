"""Bad input gets a JSON-RPC error or a 4xx, and the server keeps serving."""

import json
import socket

import pytest
import requests

from twistbridge.testing import wait_for

from .conftest import ON_THE_SESSION_SERVERS, Client

pytestmark = ON_THE_SESSION_SERVERS


def still_serving(server):
    assert Client(server).call("echo", "alive") == "alive"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b'{"jsonrpc": "2.0", "method": "echo", "params": [NaN], "id": 1}',
        b"[" * 30000 + b"]" * 30000,
        b'{"jsonrpc": "2.0", "method": "echo", "params": '
        + b"[" * 5000
        + b"]" * 5000
        + b', "id": 1}',
        b'{"a":' * 10000 + b"1" + b"}" * 10000,
    ],
    ids=["empty", "text", "binary", "nan", "deep-array", "deep-params", "deep-object"],
)
def test_unparseable_bodies_are_parse_errors(client, body):
    response = client.raw("/rpc", body)
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    still_serving(client.server)


def test_moderately_nested_params_work(client):
    value = [[[[[[[[[[1]]]]]]]]]]
    assert client.call("echo", value) == value


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"jsonrpc": "1.0", "method": "echo", "params": [1], "id": 1}, -32600),
        ({"jsonrpc": "2.0", "method": "echo", "params": 5, "id": 1}, -32600),
        ({"jsonrpc": "2.0", "method": "echo", "params": [1], "id": [1]}, -32600),
        ({"jsonrpc": "2.0", "method": "echo", "params": [1], "id": {"a": 1}}, -32600),
        ({"jsonrpc": "2.0", "method": None, "id": 1}, -32600),
        ('"just a string"', -32600),
        (42, -32600),
        ({"jsonrpc": "2.0", "method": "rpc.other", "id": 1}, -32601),
    ],
)
def test_invalid_requests(client, payload, code):
    response, body = client.post("/rpc", payload)
    assert body["error"]["code"] == code
    still_serving(client.server)


@pytest.mark.parametrize(
    "ctype, status",
    [
        # a form body is kept as bytes for the resource (Twisted never splits
        # it into fields), which refuses the media type
        ("multipart/form-data; boundary=x", 415),
        ("application/xml", 415),
        ("image/png", 415),
        ("application/x-www-form-urlencoded", None),
    ],
)
def test_wrong_content_type(client, ctype, status):
    response = client.raw(
        "/rpc",
        json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}),
        {"Content-Type": ctype},
    )
    if status is None:
        # browser code written for flaskJSONRPCServer posts JSON as a form:
        # the compatibility class accepts it, the Bridge API by default not
        status = 200 if client.server.__class__.__name__ == "CompatProcess" else 415
    assert response.status_code == status
    if status == 415:
        assert response.json()["code"] == 415
    still_serving(client.server)


@pytest.mark.parametrize(
    "ctype", ["application/json; charset=utf-8", "text/plain", "application/json-rpc"]
)
def test_json_content_types_are_accepted(client, ctype):
    response = client.raw(
        "/rpc",
        json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}),
        {"Content-Type": ctype},
    )
    assert response.json()["result"] == 1


def test_http_methods(client):
    assert client.raw("/rpc", b"", method="GET").status_code == 405
    assert client.raw("/rpc", b"", method="PUT").status_code == 405
    assert client.raw("/rpc", b"", method="DELETE").headers["Allow"] == "POST, OPTIONS"


def test_body_over_max_request_size_is_413(bridge_server):
    # the bridge server runs with --max-request-size 64K
    url = bridge_server.url("/rpc")
    big = json.dumps(
        {"jsonrpc": "2.0", "method": "echo", "params": ["x" * 70000], "id": 1}
    )
    response = requests.post(
        url, data=big, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413

    def chunks():
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192].encode()

    chunked = requests.post(
        url, data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    just_under = json.dumps(
        {"jsonrpc": "2.0", "method": "echo", "params": ["x" * 60000], "id": 1}
    )
    ok = requests.post(
        url, data=just_under, headers={"Content-Type": "application/json"}
    )
    assert ok.json()["result"] == "x" * 60000
    still_serving(bridge_server)


def test_batch_over_the_cap(compat_server):
    entry = {"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}
    response = requests.post(
        compat_server.url("/rpc"), json=[entry] * 100000, timeout=60
    )
    body = response.json()
    assert body["error"]["code"] == -32600
    assert body["id"] is None
    # read one request at a time, refused at the first one over the cap
    assert body["error"]["data"] == (
        "batch of more than 1000 requests is over the limit of 1000"
    )
    still_serving(compat_server)


def test_configured_batch_cap(client):
    entry = {"jsonrpc": "2.0", "method": "tiny", "id": 1}
    response, body = client.post("/tiny", [entry] * 6)
    assert body["error"]["code"] == -32600
    response, body = client.post("/tiny", [entry] * 5)
    assert [r["result"] for r in body] == [1] * 5


def test_client_disconnect_cancels_pending_calls(client):
    before = client.call("cancelled_count", path="/control")
    host, port = client.server.url("/").split("//")[1].rstrip("/").rsplit(":", 1)
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "hang", "id": 1},
            {"jsonrpc": "2.0", "method": "hang", "id": 2},
        ]
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    wait_for(
        lambda: client.call("stats", path="/control")["processingDispatcherCount"] == 3,
        10,
    )
    sock.close()
    wait_for(
        lambda: client.call("cancelled_count", path="/control") == before + 2,
        10,
        what="both calls cancelled",
    )
    still_serving(client.server)
