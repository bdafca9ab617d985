"""Random bodies through the whole resource (in process): never a 500, always JSON."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

from twistbridge import Bridge


def build_site():
    bridge = Bridge(max_request_size=4096)
    bridge.rpc_function(lambda a, b=1: [a, b], name="pair", run_in="reactor")
    bridge.rpc_function(lambda *x, **k: len(x) + len(k), name="count", run_in="reactor")

    def boom(x=None):
        raise ValueError("no")

    bridge.rpc_function(boom, run_in="reactor")
    root = Resource()
    bridge.rpc.add_root(root)
    return Site(root)


SITE = build_site()


def post(body: bytes):
    protocol = SITE.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    raw = transport.value()
    protocol.connectionLost(None)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, payload


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda c: (
        st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4)
    ),
    max_leaves=15,
)
requests_ = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]),
        "method": st.sampled_from(
            ["pair", "count", "boom", "nope", "system.listMethods", 5]
        ),
    },
    optional={"params": json_values, "id": json_values},
)


@pytest.mark.long
@given(st.one_of(requests_, st.lists(requests_, max_size=5), json_values))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_json_bodies_always_get_a_json_rpc_answer(value):
    status, payload = post(json.dumps(value).encode())
    assert status in (200, 204, 413), (status, payload)
    if status == 200:
        answer = json.loads(payload)
        for response in answer if isinstance(answer, list) else [answer]:
            assert response["jsonrpc"] == "2.0"
            assert ("result" in response) != ("error" in response)
            if "error" in response:
                assert "Traceback" not in response["error"]["message"]


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_byte_bodies_never_fail_the_server(body):
    status, payload = post(body)
    assert status in (200, 204), (status, payload)
    if status == 200:
        json.loads(payload)
