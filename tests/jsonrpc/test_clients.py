"""Real clients: jsonrpcclient (requests built and parsed by it) and txjsonrpc-ng's Proxy."""

import pytest
import pytest_twisted
import requests
from jsonrpcclient import Error, Ok, notification, parse, request, request_uuid
from txjsonrpc_ng import jsonrpclib
from txjsonrpc_ng.web.jsonrpc import Proxy

from .conftest import ON_THE_SESSION_SERVERS

pytestmark = ON_THE_SESSION_SERVERS


def test_jsonrpcclient_positional_and_named(server):
    url = server.url("/rpc")
    response = requests.post(url, json=request("subtract", params=(42, 23)))
    assert parse(response.json()) == Ok(19, response.json()["id"])
    response = requests.post(
        url, json=request_uuid("subtract", params={"minuend": 5, "subtrahend": 7})
    )
    parsed = parse(response.json())
    assert isinstance(parsed, Ok)
    assert parsed.result == -2


def test_jsonrpcclient_errors(server):
    url = server.url("/rpc")
    body = requests.post(url, json=request("nope")).json()
    parsed = parse(body)
    assert isinstance(parsed, Error)
    assert parsed.code == -32601
    assert parsed.message == "Method not found"
    parsed = parse(
        requests.post(url, json=request("raises", params=["bad thing"])).json()
    )
    assert (parsed.code, parsed.message) == (-32000, "bad thing")


def test_jsonrpcclient_batch_and_notification(server):
    url = server.url("/rpc")
    batch = [request("subtract", params=(10, i)) for i in range(5)] + [
        notification("update")
    ]
    response = requests.post(url, json=batch)
    parsed = parse(response.json())
    assert sorted(p.result for p in parsed) == [6, 7, 8, 9, 10]
    assert all(isinstance(p, Ok) for p in parsed)
    only = requests.post(url, json=notification("update", params=[1]))
    assert only.status_code == 204


@pytest.mark.parametrize(
    "version", [jsonrpclib.VERSION_2, jsonrpclib.VERSION_1, jsonrpclib.VERSION_PRE1]
)
@pytest_twisted.ensureDeferred
async def test_txjsonrpc_proxy(server, version):
    proxy = Proxy(server.url("/rpc"), version=version)
    assert await proxy.callRemote("subtract", 42, 23) == 19
    assert await proxy.callRemote("subtract", minuend=1, subtrahend=2) == -1
    assert await proxy.callRemote("get_data") == ["hello", 5]
    with pytest.raises(jsonrpclib.Fault) as info:
        await proxy.callRemote("raises", "from txjsonrpc")
    assert info.value.faultCode == -32000
    assert info.value.faultString == "from txjsonrpc"
    with pytest.raises(jsonrpclib.Fault) as info:
        await proxy.callRemote("nope")
    assert info.value.faultCode == -32601


@pytest_twisted.ensureDeferred
async def test_txjsonrpc_proxy_gzip(server):
    proxy = Proxy(server.url("/api"), version=jsonrpclib.VERSION_2, compress=True)
    assert await proxy.callRemote("text", 3000) == "z" * 3000
