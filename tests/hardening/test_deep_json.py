"""Deeply nested JSON on every protocol: a clean error, and the server goes on."""

import json
import socket
import urllib.error
import urllib.request

import pytest
import websocket

from twistbridge.testing import BridgeProcess

pytestmark = pytest.mark.one_worker

DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.fixture(scope="module")
def server():
    with BridgeProcess() as s:
        yield s


def post(url, body, content_type="application/json"):
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_izzati_json_body(server):
    code, body = post(server.url("/"), DEEP)
    assert code == 400
    assert "error" in json.loads(body)


def test_jsonrpc(server):
    code, body = post(server.url("/rpc"), DEEP)
    assert code == 200
    answer = json.loads(body)
    assert answer["error"]["code"] in (-32700, -32600)
    assert answer["id"] is None


def test_igor(server):
    ws = websocket.create_connection(f"ws://{server.addresses['igor']}/", timeout=10)
    try:
        ws.send(DEEP.decode())
        answer = json.loads(ws.recv())
        assert answer["code"] == 400 and "error" in answer
        ws.send(json.dumps({"streamId": "s", "action": "echo", "data": 1}))
        assert json.loads(ws.recv()) == {"streamId": "s", "data": 1}
    finally:
        ws.close()


def test_bgpy_json_lines(server):
    host, port = server.addresses["bgpy"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b'{"type": "EXEC", "args": ' + DEEP[:20000] + DEEP[-20000:] + b"}\n"
        )
        line = sock.makefile("rb").readline()
        assert json.loads(line)["type"] == "ERROR"


def test_everything_still_answers(server):
    code, body = post(
        server.url("/rpc"),
        json.dumps(
            {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
        ).encode(),
    )
    assert (code, json.loads(body)) == (200, {"jsonrpc": "2.0", "result": 5, "id": 1})
