"""The resource mounted on an existing twisted.web site, in this process."""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from txjsonrpc_ng import jsonrpclib
from txjsonrpc_ng.web.jsonrpc import Proxy

from twistbridge import Bridge
from twistbridge.jsonrpc._resource import RpcResource


@pytest_twisted.ensureDeferred
async def test_mount_on_an_existing_site_and_late_registration():
    bridge = Bridge()
    bridge.rpc_function(
        lambda a, b: a * b, name="mul", path="/v1/calc", run_in="reactor"
    )
    bridge.rpc_function(lambda x: x + 1, name="inc", path="/v1/calc")  # thread pool
    root = Resource()
    bridge.rpc.add_root(root)
    assert isinstance(root.children[b"v1"], RpcResource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        proxy = Proxy(base + "/v1/calc", version=jsonrpclib.VERSION_2)
        assert await proxy.callRemote("mul", 6, 7) == 42
        assert await proxy.callRemote("inc", 1) == 2
        bridge.rpc_function(
            lambda: "late", name="late", path="/v1/late", run_in="reactor"
        )
        late = Proxy(base + "/v1/late", version=jsonrpclib.VERSION_2)
        assert await late.callRemote("late") == "late"
        assert bridge.rpc.stats()["methods"]["/v1/calc mul"]["count"] == 1
    finally:
        await port.stopListening()


def test_path_conflicting_with_another_resource():
    bridge = Bridge()
    bridge.rpc_function(lambda: 1, name="one", path="/ws")
    root = Resource()
    root.putChild(b"ws", Resource())
    with pytest.raises(ValueError, match="conflicts"):
        bridge.rpc.add_root(root)


def test_rpc_path_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown JSON-RPC path option"):
        Bridge().rpc_path("/rpc", compress=True)


class FakeRequest:
    def __init__(self, body):
        import io

        self.content = io.BytesIO(body)


def test_read_body_stops_past_the_limit():
    from twistbridge.jsonrpc._resource import read_body

    assert read_body(FakeRequest(b"x" * 10), 10) == b"x" * 10
    assert read_body(FakeRequest(b"x" * 11), 10) is None
    assert read_body(FakeRequest(b"x" * 11), None) == b"x" * 11


@pytest_twisted.ensureDeferred
async def test_413_on_a_plain_site():
    import io

    from twisted.web.client import Agent, FileBodyProducer, readBody
    from twisted.web.http_headers import Headers

    bridge = Bridge(max_request_size=100)
    bridge.rpc_function(lambda data: data, name="echo", run_in="reactor")
    root = Resource()
    bridge.rpc.add_root(root)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    try:
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{port.getHost().port}/rpc".encode()
        body = (
            b'{"jsonrpc": "2.0", "method": "echo", "params": ["'
            + b"x" * 200
            + b'"], "id": 1}'
        )
        response = await agent.request(
            b"POST",
            url,
            Headers({b"content-type": [b"application/json"]}),
            FileBodyProducer(io.BytesIO(body)),
        )
        assert response.code == 413
        await readBody(response)
    finally:
        await port.stopListening()
