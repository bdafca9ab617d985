"""
flaskJSONRPCServer's fixJSON: what JSON cannot hold in a result (Decimal,
dates, times) is written as the original wrote it, and anything else as
null, on the compatibility class; the Bridge API applies such a hook only
on the paths that ask for it (json_default).  Exact bytes, over real
sockets.
"""

import textwrap

import pytest
import requests
from flask_programs import start_program, stop_program

from twistbridge.testing import BridgeProcess

from ...conftest import apps_environ

PROGRAM = textwrap.dedent(
    """
    import datetime, decimal
    from twistbridge.jsonrpc import flaskJSONRPCServer

    def values():
        return [decimal.Decimal("10.50"), datetime.datetime(2024, 2, 29, 13, 5, 7, 250),
                datetime.date(2024, 2, 29), datetime.time(23, 59, 1), {{1, 2}}, "\\u00e9"]

    def in_worker():
        return values()

    if __name__ == "__main__":
        server = flaskJSONRPCServer(("127.0.0.1", {port}), fallback=True)
        server.registerFunction(values, path="/api")
        server.registerFunction(
            in_worker, path="/api", dispatcherBackend="parallelWithSocket"
        )
        server.registerFunction(values, path="/own")
        if {custom}:
            server.fixJSON = lambda o: "<%s>" % type(o).__name__
        server.serveForever()
    """
)


@pytest.fixture
def program(tmp_path):
    started = []

    def run(custom=False):
        process, url = start_program(
            tmp_path / f"fix{len(started)}.py",
            lambda port: PROGRAM.format(port=port, custom=custom),
        )
        started.append(process)
        return url

    yield run
    for process in started:
        stop_program(process)


def post(url, method):
    body = b'{"jsonrpc": "2.0", "method": "%s", "id": 1}' % method.encode()
    response = requests.post(
        url, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    return response.content


ORIGINAL = (
    b'{"jsonrpc":"2.0","result":["10.50","2024-02-29T13:05:07.000250",'
    b'"2024-02-29","23:59:01",null,"\\u00e9"],"id":1}'
)


def test_fixjson_as_the_original(program):
    url = program()
    assert post(url + "/api", "values") == ORIGINAL
    assert post(url + "/api", "in_worker") == ORIGINAL  # from the process pool
    jsonp = requests.get(url + "/api/values?jsonp=cb", timeout=30).content
    assert (
        jsonp
        == b"cb("
        + ORIGINAL[len(b'{"jsonrpc":"2.0","result":') : -len(b',"id":1}')]
        + b");"
    )


def test_fixjson_replaced_by_the_program(program):
    url = program(custom=True)
    assert post(url + "/own", "values") == (
        b'{"jsonrpc":"2.0","result":["<Decimal>","<datetime>","<date>","<time>",'
        b'"<set>","\\u00e9"],"id":1}'
    )


def test_the_bridge_api_applies_a_hook_only_where_asked():
    env = apps_environ()
    with BridgeProcess(
        [
            "--app",
            "jsonrpc_fixjson_app:bridge",
            "--igor-port",
            "none",
            "--bgpy-port",
            "none",
        ],
        env=env,
    ) as bridge:
        assert post(bridge.url("/opted"), "values") == (
            b'{"jsonrpc":"2.0","result":{"price":"10.50","day":"2024-02-29",'
            b'"at":"2024-02-29T13:05:07.000250","plain":[1,"two"]},"id":1}'
        )
        assert requests.get(
            bridge.url("/opted/values?jsonp=cb"), timeout=30
        ).content == (
            b'cb({"price":"10.50","day":"2024-02-29",'
            b'"at":"2024-02-29T13:05:07.000250","plain":[1,"two"]});'
        )
        plain = post(bridge.url("/plain"), "values")
        assert plain == (
            b'{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error",'
            b'"data":"result[\'price\'] of type Decimal is not JSON"},"id":1}'
        )
