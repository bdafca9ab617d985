"""
What clients are told when a handler fails: its exception's class and
message (never a traceback), and for a result JSON cannot carry, the
offending type; the same words on all four protocols.
"""

import json

import pytest
import requests

from twistbridge.errors import Busy, error_text, not_json_text
from twistbridge.offload import RemoteError, ServerBusy
from twistbridge.testing import BridgeProcess, JsonLinesClient

from .conftest import apps_environ

pytestmark = pytest.mark.one_worker


def test_error_text():
    assert error_text(KeyError("name")) == "KeyError: 'name'"
    assert error_text(ValueError("bad input")) == "ValueError: bad input"
    assert error_text(RuntimeError()) == "RuntimeError"
    assert error_text(RemoteError("mymod.QuotaError", "over quota")) == (
        "QuotaError: over quota"
    )
    busy = ServerBusy("thread", 3)
    assert isinstance(busy, Busy)
    assert error_text(busy) == (
        "server busy: 3 calls are waiting for the thread pool; try again later"
    )


def test_not_json_text():
    loop = []
    loop.append(loop)
    assert not_json_text({1}) == "result of type set is not JSON"
    assert not_json_text({"tags": [1, b"x"]}) == (
        "result['tags'][1] of type bytes is not JSON"
    )
    assert not_json_text({(1, 2): 3}) == (
        "result has a key of type tuple, which is not JSON"
    )
    assert not_json_text(loop) == (
        "result[0] refers back to a value containing it, which JSON cannot hold"
    )
    assert not_json_text([1.0, float("nan")]) == "result[1] is nan, which is not JSON"
    assert not_json_text({"s": {1}, "o": object()}, "answer", (set,)) == (
        "answer['o'] of type object is not JSON"
    )
    assert not_json_text(1) == "result is not JSON"


@pytest.fixture(scope="module")
def server():
    env = apps_environ(BGPY_TOKEN="errors-token")
    with BridgeProcess(["--app", "answers_app:bridge"], env=env) as server:
        yield server


def rpc(server, method, *params):
    body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 7}
    return requests.post(server.url("/rpc"), json=body, timeout=30).json()


def test_json_rpc(server):
    assert rpc(server, "lookup", {}) == {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "'name'", "data": {"type": "KeyError"}},
        "id": 7,
    }
    assert rpc(server, "tags") == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32603,
            "message": "Internal error",
            "data": "result['tags'] of type set is not JSON",
        },
        "id": 7,
    }


def test_izzati(server):
    answer = requests.post(server.url("/"), data={"action": "lookup"}, timeout=30)
    assert (answer.status_code, answer.json()) == (500, {"error": "KeyError: 'name'"})
    answer = requests.post(server.url("/"), data={"action": "set"}, timeout=30)
    assert (answer.status_code, answer.json()) == (
        500,
        {"error": "result of type set is not JSON"},
    )


def test_igor(server):
    import websocket

    ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=30)
    try:
        ws.send(json.dumps({"streamId": 1, "action": "echo", "data": "lookup"}))
        assert [json.loads(ws.recv()) for _ in range(2)] == [
            {"streamId": 1, "error": "KeyError: 'name'"},
            {"streamId": 1, "close": True},
        ]
        ws.send(json.dumps({"streamId": 2, "action": "echo", "data": "set"}))
        assert [json.loads(ws.recv()) for _ in range(2)] == [
            {"streamId": 2, "error": "TypeError: data of type set is not JSON"},
            {"streamId": 2, "close": True},
        ]
    finally:
        ws.close()


def test_bgpy(server):
    with JsonLinesClient(server.addresses["bgpy"]) as client:
        client.call("AUTH", token="errors-token")
        client.line()
        received = {"type": "OK", "args": {"message": "Received 'EXEC'"}}
        assert client.call("EXEC", command="lookup", await_response=True) == received
        assert client.line() == {
            "type": "ERROR",
            "args": {"message": "exec_task failed: KeyError: 'name'"},
        }
        assert client.call("EXEC", command="object", await_response=True) == received
        assert client.line() == {
            "type": "ERROR",
            "args": {
                "message": "Answer is not JSON: answer['value'] of type object is not JSON."
            },
        }
