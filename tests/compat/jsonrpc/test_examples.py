"""
flaskJSONRPCServer's example programs, run unchanged apart from the import
(``from twistbridge.jsonrpc import flaskJSONRPCServer``) and Python 2's
``print`` statements, and called with real JSON-RPC clients.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest
import requests
from jsonrpcclient import Error, Ok, parse, request

from twistbridge.testing import free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "example")  # flaskJSONRPCServer's, as shipped


def converted(name):
    """The example's source with the import changed and print() calls."""
    source = open(os.path.join(EXAMPLES, name), encoding="utf-8").read()
    source = source.replace(
        "from flaskJSONRPCServer import flaskJSONRPCServer",
        "from twistbridge.jsonrpc import flaskJSONRPCServer",
    )
    return re.sub(r"^(\s*)print (.*)$", r"\1print(\2)", source, flags=re.M)


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def example(tmp_path):
    started = []

    def run(name, ports):
        wait_for(lambda: not any(listening(p) for p in ports), 30, what=f"ports {ports} free")
        script = tmp_path / name
        script.write_text(converted(name), encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=str(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(process)

        def ready():
            if process.poll() is not None:
                raise RuntimeError(process.stdout.read().decode())
            return all(listening(p) for p in ports)

        wait_for(ready, 30, what=f"{name} listening")
        return process

    yield run
    for process in started:
        process.terminate()
        process.wait(10)


def call(url, method, *params, **headers):
    response = requests.post(url, json=request(method, params=params), headers=headers, timeout=10)
    return parse(response.json()), response


def test_simple(example):
    example("simple.py", [7001])
    api = "http://127.0.0.1:7001/api"
    assert call(api, "echo", "hi")[0] == Ok("hi", 1)
    assert call(api, "helloworld")[0].result == "Hello world!"
    assert isinstance(call(api, "random")[0].result, int)
    assert 0 <= call("http://127.0.0.1:7001/api2", "random")[0].result <= 1
    assert call(api, "myip")[0].result == "Hello, 127.0.0.1!"
    result, response = call(api, "setcookie")
    assert result.result == "Setted"
    assert "myTestCookie=" in response.headers["Set-Cookie"]
    error = call(api, "error")[0]
    assert isinstance(error, Error)
    assert (error.code, error.message) == (-32000, "Some error simulated!")
    big, response = call(api, "bigdata", **{"Accept-Encoding": "gzip"})
    assert big.result.startswith("\nThey say that if you sat an infinite number of monkeys")
    assert response.headers["Content-Encoding"] == "gzip"
    assert "echo" in json.dumps(call(api, "stats")[0].result)
    jsonp = requests.get(f"{api}/echo?data=test_data&jsonp=jsonpCallback_129620", timeout=10)
    assert jsonp.text.startswith('jsonpCallback_129620("test_data")')


def test_multiple(example):
    example("multiple.py", [7001, 7002, 7003])
    for port in (7001, 7002, 7003):
        value = call(f"http://127.0.0.1:{port}/api", "random", 10)[0].result
        assert 0 <= value < 10


def test_notify(example):
    example("notify.py", [7001, 7002])
    for port in (7001, 7002):
        api = f"http://127.0.0.1:{port}/api"
        assert 0 <= call(api, "random", 5)[0].result < 5
        assert "random" in json.dumps(call(api, "stats")[0].result["methods"])


POSTPROCESS = textwrap.dedent(
    """
    from twistbridge.jsonrpc import flaskJSONRPCServer

    def fail():
        raise ValueError("boom")

    def rewrite(request, server, controller):
        status, headers, data, raw = controller.lastResponse
        return 200, '{{"rewritten": %d, "path": "%s"}}' % (raw["rpcError"][0], request["path"]), [("Content-Type", "application/json")]

    def look(request, server, controller):
        print("looked", controller.lastResponse[0], flush=True)
        controller.skip()

    def app(environ, start_response):
        start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
        return [b"teapot:", environ["flaskJSONRPCServer_lastResponse"][0].encode()]

    server = flaskJSONRPCServer(("127.0.0.1", {port}))
    server.postprocessAdd("cb", look, status=[-32000])
    server.postprocessAdd_cb(rewrite, status=-32000)
    server.postprocessAdd_wsgi(app, status=404)
    server.registerFunction(fail, path="/api")
    server.serveForever()
    """
)


def test_postprocess(example, tmp_path):
    port = free_port()
    (tmp_path / "pp.py").write_text(POSTPROCESS.format(port=port))
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "pp.py")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: listening(port) or process.poll() is not None, 30, what="listening")
        response = requests.post(
            f"http://127.0.0.1:{port}/api", json=request("fail"), timeout=10
        )
        assert (response.status_code, response.json()) == (200, {"rewritten": -32000, "path": "/api/"})
        response = requests.post(f"http://127.0.0.1:{port}/nothing", json=request("x"), timeout=10)
        assert (response.status_code, response.text) == (418, "teapot:404 Not Found")
        with pytest.raises(Exception, match="while server runned"):
            from twistbridge.jsonrpc import flaskJSONRPCServer

            server = flaskJSONRPCServer(("127.0.0.1", 0))
            server.started = True
            server.postprocessAdd_cb(print, status=500)
    finally:
        process.terminate()
        out = process.communicate(timeout=10)[0].decode()
    assert "looked 200" in out


@pytest.mark.parametrize("how", ["serveForever()", "start(joinLoop=True)"])
def test_port_taken_exits_with_one_line(how):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    program = (
        "from twistbridge.jsonrpc import flaskJSONRPCServer\n"
        f"s = flaskJSONRPCServer(('127.0.0.1', {port}))\n"
        "s.registerFunction(print, path='/api')\n"
        f"s.{how}\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"flaskJSONRPCServer: cannot listen on 127.0.0.1:{port}: port {port} is already in use\n"
    )
