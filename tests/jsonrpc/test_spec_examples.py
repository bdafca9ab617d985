"""
Every example of the JSON-RPC 2.0 specification (section 7), sent as the
specification writes it, against `twistd bridge` and the compatibility class.
Batches are compared order-insensitively, as the specification allows.
"""

import json

import pytest

from .conftest import ON_THE_SESSION_SERVERS

pytestmark = ON_THE_SESSION_SERVERS

EXAMPLES = [
    # rpc call with positional parameters
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        '{"jsonrpc": "2.0", "result": 19, "id": 1}',
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        '{"jsonrpc": "2.0", "result": -19, "id": 2}',
    ),
    # rpc call with named parameters
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        '{"jsonrpc": "2.0", "result": 19, "id": 3}',
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        '{"jsonrpc": "2.0", "result": 19, "id": 4}',
    ),
    # a Notification
    ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    # rpc call of non-existent method
    (
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}',
    ),
    # rpc call with invalid JSON
    (
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}',
    ),
    # rpc call with invalid Request object
    (
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}',
    ),
    # rpc call Batch, invalid JSON
    (
        '[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        '  {"jsonrpc": "2.0", "method"\n]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}',
    ),
    # rpc call with an empty Array
    (
        "[]",
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}',
    ),
    # rpc call with an invalid Batch (but not empty)
    (
        "[1]",
        '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]',
    ),
    # rpc call with invalid Batch
    (
        "[1,2,3]",
        "["
        + ",".join(
            [
                '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
            ]
            * 3
        )
        + "]",
    ),
    # rpc call Batch
    (
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
        """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]""",
    ),
    # rpc call Batch (all notifications)
    (
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
        None,
    ),
]


def canonical(value):
    """A batch's responses in a fixed order (the specification lets them come in any)."""
    if isinstance(value, list):
        return sorted(json.dumps(v, sort_keys=True) for v in value)
    return value


@pytest.mark.parametrize(
    "sent, expected", EXAMPLES, ids=[str(i) for i in range(len(EXAMPLES))]
)
def test_specification_example(client, sent, expected):
    response = client.raw("/rpc", sent.encode())
    if expected is None:
        assert response.status_code == 204
        assert response.content == b""
        return
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert canonical(response.json()) == canonical(json.loads(expected))


def test_batch_responses_keep_request_order(client):
    batch = [
        {"jsonrpc": "2.0", "method": "subtract", "params": [i, 1], "id": i}
        for i in range(20)
    ]
    response, body = client.post("/rpc", batch)
    assert [r["id"] for r in body] == list(range(20))
    assert [r["result"] for r in body] == [i - 1 for i in range(20)]
