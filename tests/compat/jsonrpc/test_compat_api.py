"""
The rest of flaskJSONRPCServer's public API on the compatibility class,
over real sockets: simulateRequest, getWSGI (served by wsgiref), and what
_connection computes (call.*, dispatcherName, request, ...).
"""

import json
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
import requests

from twistbridge.testing import free_port, wait_for

pytestmark = pytest.mark.one_worker

PROGRAM = textwrap.dedent(
    """
    import json, threading
    from wsgiref.simple_server import make_server, WSGIRequestHandler
    from twistbridge.jsonrpc import MainError, flaskJSONRPCServer

    def double(x):
        return x * 2

    def boom():
        raise ValueError("bad")

    def locker(_connection=None):
        call = _connection.call
        call.lockThis()
        locked = call.waitThis(returnStatus=True)
        call.unlockThis()
        unlocked = call.waitThis(returnStatus=True)
        call.log(3, "from", "locker")
        call.sleep(0)  # sleep-ok: the API under test
        return [locked, unlocked, _connection.dispatcherName, _connection.request,
                _connection.serverName, _connection.dispatcher.__name__,
                _connection.execBackendId, _connection.nativeThread]

    def whoami(_connection=None):
        _connection.headersOut["X-" + _connection.dispatcherName] = "1"
        return [_connection.dispatcherName, _connection.notify, _connection.request["id"]]

    def evaluate(_connection=None):
        return _connection.call.eval("1 + 1")

    def simulated(_connection=None):
        return _connection.server.simulateRequest("double", [21], "/api")[0]

    server = flaskJSONRPCServer(("127.0.0.1", {port}), name="srv")
    for f in (double, boom, locker, evaluate, simulated, whoami):
        server.registerFunction(f, path="/api")
    server.registerFunction(whoami, path="/api", name="whoami2")

    def show(label, thunk):
        try:
            print("SIM", label, json.dumps(thunk()), flush=True)
        except MainError as e:
            print("SIM", label, "MainError:", e, flush=True)

    show("ok", lambda: server.simulateRequest("double", [3], "/api"))
    show("kw", lambda: server.simulateRequest("double", {{"x": "ab"}}, "/api/"))
    show("raises", lambda: server.simulateRequest("boom", path="/api"))
    show("unknown", lambda: server.simulateRequest("nope", path="/api"))
    show("params", lambda: server.simulateRequest("double", [1, 2], "/api"))
    show("notify", lambda: server.simulateRequest("double", [1], "/api", notify=True))
    show("nopath", lambda: server.simulateRequest("double", [1], "/nothing"))

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    wsgi = make_server("127.0.0.1", {wsgi_port}, server.getWSGI(), handler_class=Quiet)
    threading.Thread(target=wsgi.serve_forever, daemon=True).start()
    server.serveForever()
    """
)


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Served:
    """The running program, its ports, and what it printed so far."""

    def __init__(self, process, port, wsgi_port):
        self.process, self.port, self.wsgi_port = process, port, wsgi_port
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def printed(self, text):
        """Wait until a line containing C{text} was printed."""
        return wait_for(
            lambda: [line for line in list(self.lines) if text in line],
            30,
            what=f"a line with {text!r}",
        )[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    port, wsgi_port = free_port(), free_port()
    script = tmp_path_factory.mktemp("api") / "program.py"
    script.write_text(PROGRAM.format(port=port, wsgi_port=wsgi_port))
    process = subprocess.Popen(
        [sys.executable, "-u", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    program = Served(process, port, wsgi_port)

    def ready():
        if process.poll() is not None:
            raise RuntimeError("\n".join(program.lines))
        return listening(port) and listening(wsgi_port)

    wait_for(ready, 30, what="the program listening")
    yield program
    process.terminate()
    process.wait(10)


def rpc(port, method, params=None, id=1, path="/api"):
    body = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return requests.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=10).json()


JSON = [["Content-Type", "application/json"]]


def test_simulate_request(served):
    served.printed("SIM nopath")
    lines = {
        line.split()[1]: line.split(" ", 2)[2]
        for line in served.lines
        if line.startswith("SIM ")
    }
    assert json.loads(lines.pop("ok")) == [[{"id": 1, "data": 6}], JSON]
    assert json.loads(lines.pop("kw")) == [[{"id": 1, "data": "abab"}], JSON]
    assert json.loads(lines.pop("raises")) == [
        [{"code": -32000, "message": "bad", "data": {"type": "ValueError"}, "id": 1}],
        JSON,
    ]
    assert json.loads(lines.pop("unknown")) == [
        [{"code": -32601, "message": "Method not found", "id": 1}],
        JSON,
    ]
    params = json.loads(lines.pop("params"))
    assert (
        params[0][0]["code"] == -32602 and params[0][0]["message"] == "Invalid params"
    )
    assert json.loads(lines.pop("notify")) == [[], JSON]
    assert lines.pop("nopath") == "MainError: 404 Not Found: no methods at /nothing"
    assert lines == {}


def test_simulate_request_from_a_method(served):
    port = served.port
    assert rpc(port, "simulated") == {
        "jsonrpc": "2.0",
        "result": [{"id": 1, "data": 42}],
        "id": 1,
    }


def test_connection_call_and_computed_entries(served):
    port = served.port
    assert rpc(port, "locker", [], id=5) == {
        "jsonrpc": "2.0",
        "result": [
            True,
            False,
            "locker",
            {"jsonrpc": "2.0", "method": "locker", "params": [], "id": 5},
            "srv",
            "locker",
            "simple",
            True,
        ],
        "id": 5,
    }
    assert served.printed("INFO: from locker").endswith("INFO: from locker")


def test_connection_call_without_eval(served):
    port = served.port
    answer = rpc(port, "evaluate")
    assert answer["error"]["code"] == -32000
    assert answer["error"]["message"] == (
        "_connection.call has no 'eval': it offers lock, lockThis, log, sleep, "
        "unlock, unlockThis, wait, waitThis (eval, execute and copyGlobal belong to "
        "flaskJSONRPCServer's process backends: a method running in a thread reads "
        "and changes the program's globals directly)"
    )


def test_wsgi_app(served):
    wsgi = f"http://127.0.0.1:{served.wsgi_port}"
    one = {"jsonrpc": "2.0", "method": "double", "params": [5], "id": 9}
    assert requests.post(f"{wsgi}/api", json=one, timeout=10).json() == {
        "jsonrpc": "2.0",
        "result": 10,
        "id": 9,
    }
    batch = [one, {"jsonrpc": "2.0", "method": "double", "params": [1]}, {"x": 1}]
    response = requests.post(f"{wsgi}/api/", json=batch, timeout=10)
    assert response.json() == [
        {"jsonrpc": "2.0", "result": 10, "id": 9},
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Invalid Request"},
            "id": None,
        },
    ]
    raises = requests.post(
        f"{wsgi}/api", json=dict(one, method="boom", params=[]), timeout=10
    )
    assert raises.json()["error"] == {
        "code": -32000,
        "message": "bad",
        "data": {"type": "ValueError"},
    }
    notified = requests.post(
        f"{wsgi}/api",
        json={"jsonrpc": "2.0", "method": "double", "params": [1]},
        timeout=10,
    )
    assert (notified.status_code, notified.content) == (204, b"")
    jsonp = requests.get(f"{wsgi}/api/double?x=ab&jsonp=cb", timeout=10)
    assert (jsonp.headers["Content-Type"], jsonp.text) == (
        "application/javascript",
        'cb("abab");',
    )
    jsonp = requests.get(f"{wsgi}/api/boom", timeout=10)
    assert jsonp.json() == {
        "error": {"code": -32000, "message": "bad", "data": {"type": "ValueError"}}
    }
    assert requests.get(f"{wsgi}/api/nope?jsonp=cb", timeout=10).text == (
        'cb({"error":{"code":-32601,"message":"Method not found"}});'
    )
    assert requests.get(f"{wsgi}/nothing/double", timeout=10).status_code == 404
    missing = requests.post(f"{wsgi}/nothing", json=one, timeout=10)
    assert (missing.status_code, missing.text) == (404, "Not found")
    parse = requests.post(f"{wsgi}/api", data=b"{nope", timeout=10).json()
    assert parse["error"]["code"] == -32700


MORE = textwrap.dedent(
    """
    import json
    from twistbridge.jsonrpc import flaskJSONRPCServer

    class Methods:
        def double(self, x):
            return x * 2

        def _private(self):
            return "private"

        data = "not a method"

    def echo(data="hi", _connection=None):
        return data
    echo._alias = "helloworld"

    # no address: a server for simulateRequest (and getWSGI) only
    fake = flaskJSONRPCServer(None)
    fake.registerFunction(echo, path="/api")
    fake.registerInstance(Methods(), path="/i", filter=lambda d, n, m: (n != "double", n.upper(), m))
    out = {{
        "routes": {{p: sorted(v) for p, v in fake.routes.items()}},
        "args": fake.routes["/api/"]["echo"]["args"],
        "private": fake.simulateRequest("_PRIVATE", path="/i")[0],
        "alias": fake.simulateRequest("helloworld", path="/api")[0],
        "redirected": fake.callAsync(lambda: 1 / 0, redirectErrorsToLog=2),
        "locked": fake.locked,
    }}
    print("OUT", json.dumps(out), flush=True)

    asked = []

    def restart_once(server):
        asked.append(1)
        return len(asked) == 2

    server = flaskJSONRPCServer(("127.0.0.1", {port}))
    server.registerFunction(echo, path="/api")
    server.serveForever(restartOn=restart_once, sleep=0.1)
    """
)


def test_more_of_the_api(tmp_path):
    port = free_port()
    (tmp_path / "more.py").write_text(MORE.format(port=port))
    process = subprocess.Popen(
        [sys.executable, "-u", str(tmp_path / "more.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    program = Served(process, port, None)
    try:
        out = json.loads(program.printed("OUT ").split(" ", 1)[1])
        assert out == {
            "routes": {"/api/": ["echo", "helloworld"], "/i/": ["_PRIVATE"]},
            "args": ["data", "_connection"],
            "private": [{"id": 1, "data": "private"}],
            "alias": [{"id": 1, "data": "hi"}],
            "redirected": None,
            "locked": False,
        }
        assert program.printed("WARNING: division by zero").endswith(
            "WARNING: division by zero"
        )
        program.printed("flaskJSONRPCServer: restarting (restartOn)")
        # (The old listener may still accept until the restart closes it:
        # the second "listening on" line is the new one.)
        wait_for(
            lambda: [
                line
                for line in list(program.lines)
                if f"listening on 0.0.0.0:{port}" in line
                or f"listening on 127.0.0.1:{port}" in line
            ][1:],
            30,
            what="listening again",
        )
        assert rpc(port, "echo", ["back"]) == {
            "jsonrpc": "2.0",
            "result": "back",
            "id": 1,
        }
    finally:
        process.terminate()
        process.wait(10)


def test_each_call_of_a_batch_has_its_own_connection(served):
    batch = [
        {"jsonrpc": "2.0", "method": "whoami", "id": 1},
        {"jsonrpc": "2.0", "method": "whoami2", "id": 2},
    ]
    response = requests.post(
        f"http://127.0.0.1:{served.port}/api", json=batch, timeout=10
    )
    assert response.json() == [
        {"jsonrpc": "2.0", "result": ["whoami", False, 1], "id": 1},
        {"jsonrpc": "2.0", "result": ["whoami2", False, 2], "id": 2},
    ]
    assert (response.headers["X-whoami"], response.headers["X-whoami2"]) == ("1", "1")


POOL = textwrap.dedent(
    """
    import os

    PARENT = os.environ.get("PARENT_PID")

    def peer(_connection=None):
        return [_connection.ip, _connection.method, _connection.path, str(os.getpid()) != PARENT]

    if __name__ == "__main__":
        os.environ["PARENT_PID"] = str(os.getpid())
        from twistbridge.jsonrpc import flaskJSONRPCServer

        server = flaskJSONRPCServer(("127.0.0.1", {port}), dispatcherBackend="parallelWithSocket")
        server.registerFunction(peer, path="/api")
        server.serveForever()
    """
)


def test_connection_in_the_process_pool_reads_as_attributes(tmp_path):
    port = free_port()
    (tmp_path / "pool.py").write_text(POOL.format(port=port))
    process = subprocess.Popen(
        [sys.executable, "-u", str(tmp_path / "pool.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    program = Served(process, port, None)
    try:
        wait_for(
            lambda: listening(port) or process.poll() is not None, 30, what="listening"
        )
        assert rpc(port, "peer") == {
            "jsonrpc": "2.0",
            "result": ["127.0.0.1", "peer", "/api", True],
            "id": 1,
        }
    finally:
        process.terminate()
        process.wait(10)
        assert "Traceback" not in "\n".join(program.lines)
