"""
flaskJSONRPCServer's example programs, run unchanged apart from the imports
(``from twistbridge.jsonrpc import flaskJSONRPCServer``,
``from twistbridge.jsonrpc.utils import ...``) and the Python 2 constructs
Python 3 cannot run (``print x``, ``xrange``, ``.iteritems()``,
``urlparse``, ``except E, e``, ``inspect.getargspec``, ``/`` used as
integer division), and called with real JSON-RPC clients.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
import requests
from jsonrpcclient import Error, Ok, parse, request

from twistbridge.testing import free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "example")  # flaskJSONRPCServer's, as shipped

#: Python 2 -> 3, as 2to3 would (and integer division where it was meant).
PY3 = [
    (r"^(\s*)print (.*)$", r"\1print(\2)"),
    (r"\bxrange\(", "range("),
    (r"\.iteritems\(\)", ".items()"),
    (
        r"\bimport sys, time, random, urlparse, inspect, json",
        "import sys, time, random, urllib.parse as urlparse, inspect, json",
    ),
    (r"except (\w+), (\w+):", r"except \1 as \2:"),
    (r"inspect\.getargspec\((\w+)\)", r"inspect.getfullargspec(\1)[:4]"),
    (r"len\(arrMap\)/2\]", "len(arrMap)//2]"),
    (r"\(len\(arrMap\)-1\)/2", "(len(arrMap)-1)//2"),
    (r"\basync\b", "async_"),  # a keyword since Python 3.7
    # Python 2's Flask gave request.data as str
    (r"d=request\.data$", "d=request.get_data(as_text=True)"),
]


def converted(name):
    """The example's source with the imports changed and Python 3 syntax."""
    source = open(os.path.join(EXAMPLES, name), encoding="utf-8").read()
    source = source.replace(
        "from flaskJSONRPCServer import flaskJSONRPCServer",
        "from twistbridge.jsonrpc import flaskJSONRPCServer",
    ).replace("from flaskJSONRPCServer.", "from twistbridge.jsonrpc.")
    for pattern, replacement in PY3:
        source = re.sub(pattern, replacement, source, flags=re.M)
    return source


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Example:
    """A running example program and the lines it printed so far."""

    def __init__(self, process):
        self.process = process
        self.lines = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_line(self, pattern, count=1, timeout=30):
        """The C{count}th printed line matching C{pattern} (a regex)."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: [line for line in self.lines if re.search(pattern, line)][
                    count - 1 : count
                ],
                timeout,
            )
        assert found, f"no line {count} matching {pattern!r} in:\n{self.output}"
        return found[0]


@pytest.fixture
def example(tmp_path):
    started = []

    def run(name, ports, extra=()):
        wait_for(
            lambda: not any(listening(p) for p in ports), 30, what=f"ports {ports} free"
        )
        for other in (name, *extra):
            (tmp_path / other).write_text(converted(other), encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-u", str(tmp_path / name)],
            cwd=str(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        running = Example(process)
        started.append(running)

        def ready():
            if process.poll() is not None:
                raise RuntimeError(running.output)
            return all(listening(p) for p in ports)

        wait_for(ready, 30, what=f"{name} listening")
        return running

    yield run
    for running in started:
        running.process.terminate()
        running.process.wait(10)


def call(url, method, *params, timeout=10, **headers):
    response = requests.post(
        url, json=request(method, params=params, id=1), headers=headers, timeout=timeout
    )
    return parse(response.json()), response


def call_named(url, method, **params):
    response = requests.post(url, json=request(method, params=params, id=1), timeout=10)
    return parse(response.json())


API = "http://127.0.0.1:7001/api"


def test_auth(example):
    running = example("auth.py", [7001])
    guarded = "http://127.0.0.1:7001/apiAuth"
    outside = {"X-Real-IP": "10.1.2.3"}
    # /api/ is open to everyone; hiGuest greets the peer address
    assert call(API, "hi", **outside)[0] == Ok("Hello, 127.0.0.1!", 1)
    # /apiAuth/: a Token, or a request from 127.0.0.1 (X-Real-IP first)
    refused = requests.post(guarded, json=request("hi"), headers=outside, timeout=10)
    assert (refused.status_code, refused.text) == (403, "Forbidden")
    assert call(guarded, "hi", Token="1234", **outside)[0] == Ok("Hello, USER!", 1)
    assert call(guarded, "hi")[0] == Ok("Hello, USER!", 1)
    jsonp = requests.get(f"{guarded}/hi?jsonp=cb", headers=outside, timeout=10)
    assert (jsonp.status_code, jsonp.text) == (403, "Forbidden")
    jsonp = requests.get(
        f"{guarded}/hi?jsonp=cb", headers={"Token": "1234"}, timeout=10
    )
    assert jsonp.text == 'cb("Hello, USER!");'
    # auth(server, path, request, jsonpMethod) saw flaskJSONRPCServer's request
    line = running.wait_line(r"^AUTH_CB /apiAuth/ .*'X-Real-Ip': '10\.1\.2\.3'")
    assert line.endswith("} 10.1.2.3")
    assert "'Token': '1234'" in running.wait_line(r"^AUTH_CB /apiAuth/ .*Token", 1)
    assert running.wait_line(r"^AUTH_CB /api/ ").endswith("} 10.1.2.3")


def test_auth_of_flaskjsonrpcserver_0_9(tmp_path):
    """auth(server, request) once per HTTP request, True or 403; 404 before it."""
    port = free_port()
    program = textwrap.dedent(
        f"""
        from twistbridge.jsonrpc import flaskJSONRPCServer

        def auth(server, request):
            print("AUTH", request["method"], request["path"], request["fileName"],
                  sorted(request["args"]), request["data"], server.name, flush=True)
            if request["headers"].get("X-Token") == "raise":
                raise RuntimeError("auth broke")
            return request["headers"].get("X-Token") == "yes" or "truthy, not True"

        server = flaskJSONRPCServer(("127.0.0.1", {port}), auth=auth, name="srv")
        server.registerFunction(lambda x: x * 2, path="/api", name="double")
        server.serveForever()
        """
    )
    (tmp_path / "p.py").write_text(program)
    process = subprocess.Popen(
        [sys.executable, "-u", str(tmp_path / "p.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    running = Example(process)
    try:
        wait_for(
            lambda: listening(port) or process.poll() is not None, 30, what="listening"
        )
        url = f"http://127.0.0.1:{port}/api"
        body = request("double", params=[2])
        refused = requests.post(url, json=[body, body], timeout=10)
        assert (refused.status_code, refused.text) == (403, "Forbidden")
        allowed = requests.post(
            url, json=[body, body], headers={"X-Token": "yes"}, timeout=10
        )
        assert [item["result"] for item in allowed.json()] == [4, 4]
        jsonp = requests.get(
            f"{url}/double?x=3&jsonp=cb", headers={"X-Token": "yes"}, timeout=10
        )
        assert jsonp.text == 'cb("33");'  # query values are strings
        broken = requests.post(url, json=body, headers={"X-Token": "raise"}, timeout=10)
        assert (broken.status_code, broken.text) == (500, "Internal Server Error")
        unknown = requests.post(
            f"http://127.0.0.1:{port}/nothing", json=body, timeout=10
        )
        assert (unknown.status_code, unknown.text) == (404, "Not found")
        above = requests.post(f"{url}/double", json=body, timeout=10)
        assert (above.status_code, above.text) == (
            404,
            "Not found, but known previous level: /api/",
        )
        running.wait_line(r"auth broke")
    finally:
        process.terminate()
        process.wait(10)
    auth_lines = [line for line in running.lines if line.startswith("AUTH ")]
    data = json.dumps([body, body], separators=(", ", ": ")).encode()
    assert auth_lines[:3] == [
        f"AUTH POST /api/  [] {data!r} srv",
        f"AUTH POST /api/  [] {data!r} srv",
        "AUTH GET /api/ double ['jsonp', 'x'] None srv",
    ]
    assert len(auth_lines) == 4  # one per request; none for the 404s
    assert "Traceback" in running.output  # logged for the server's owner ...
    assert "auth broke" not in broken.text  # ... never sent to the client


def test_restart(example):
    running = example("restart.py", [7001])
    assert call(API, "helloworld")[0] == Ok("Hello world!", 1)
    assert call(API, "restart")[0] == Ok(None, 1)
    running.wait_line(r"^Restarting\.\.$")
    wait_for(lambda: not listening(7001), 10, what="the server stopped")
    with pytest.raises(requests.ConnectionError):
        requests.post(API, json=request("echo"), timeout=10)
    running.wait_line(r"^ok$")
    assert call(API, "echo", "again")[0] == Ok("again", 1)


def test_hot_reload1(example):
    running = example("hotReload1.py", [7001], extra=["rr1.py"])
    first = call(API, "compute")[0].result
    assert re.fullmatch(r'"compute\(\)" method from main module: \d+\.\d+', first)
    answers = {
        "hotReload1.py": lambda answer: answer == first,
        "rr1.py": lambda answer: re.fullmatch(
            r'"compute\(\)" method from rr1 module: \d+(\.\d+)?', answer
        ),
        "lambda": lambda answer: answer == 'dummy "compute()" method from runtime',
    }
    seen = set()
    for n in range(1, 80):
        assert call(API, "reloadApi")[0] == Ok(None, 1)
        chosen = re.fullmatch(
            r'Reload api to "(.*)"\.\.', running.wait_line(r"^Reload api to ", n)
        ).group(1)
        assert answers[chosen](call(API, "compute")[0].result), chosen
        seen.add(chosen)
        if len(seen) == 3:
            break
    assert seen == set(answers)
    assert call(API, "stats")[0].result["methods"]["/api compute"]["count"] >= 3


def test_hot_reload2(example, tmp_path):
    example("hotReload2.py", [7001])
    assert call(API, "testForReload1")[0] == Ok("From original: 42", 1)
    script = tmp_path / "hotReload2.py"
    script.write_text(
        script.read_text().replace("From original", "From the edited file")
    )
    assert call(API, "reloadApi")[0] == Ok(None, 1)
    assert call(API, "testForReload1")[0] == Ok("From the edited file: 42", 1)
    assert call(API, "testForReload2")[0] == Ok("From original: 42", 1)
    assert call_named(API, "reloadApi", globally=True) == Ok(None, 1)
    assert call(API, "testForReload2")[0] == Ok("From the edited file: 42", 1)


def test_sexy_prime(example):
    example("sexyPrime.py", [7001])
    scope = {}
    exec(converted("sexyPrime.py").split("if __name__")[0], scope)
    expected = len(scope["sexy_primes"](2000))
    assert expected > 10
    assert call(API, "sexyPrime", 2000)[0] == Ok(expected, 1)
    assert call(API, "sexyPrimeA", 2000)[0] == Ok(expected, 1)
    assert call(API, "myip")[0] == Ok("Hello, 127.0.0.1!", 1)
    assert call(API, "stats")[0].result["methods"]["/api sexyPrimeA"]["count"] == 1


def test_flask_emulate(example):
    example("flaskEmulate.py", [7001])
    # a form POSTed to /api/test1, as the old Flask API took it: through the
    # 404 postprocesser and simulateRequest
    response = requests.post(f"{API}/test1", data={"a": "1", "b": "x y"}, timeout=10)
    assert response.status_code == 200
    inner = json.dumps({"result": ["test"], "params_echo": {"a": "1", "b": "x y"}})
    assert response.json() == [{"id": 1, "data": inner}]
    # and as JSON-RPC and JSONP
    body = {"jsonrpc": "2.0", "method": "test1", "params": {"q": 1}, "id": 7}
    assert requests.post(API, json=body, timeout=10).json() == {
        "jsonrpc": "2.0",
        "result": json.dumps({"result": ["test"], "params_echo": {"q": 1}}),
        "id": 7,
    }
    jsonp = requests.get(f"{API}/test1?x=2&jsonp=cb", timeout=10)
    inner = json.dumps({"result": ["test"], "params_echo": {"x": "2"}})
    assert jsonp.text == f"cb({json.dumps(inner)});"


def test_merge_flask_app(example):
    running = example("mergeFlaskApp.py", [7001])
    root = "http://127.0.0.1:7001"
    response = requests.post(f"{root}/readpost", data='say "hi"', timeout=10)
    assert (response.status_code, response.text) == (
        200,
        '{"jsonrpc": "2.0", "result":"(REWRITED_WITH_flaskReadpost2) You sended say \\"hi\\"", "id": 1}',
    )
    response = requests.get(f"{root}/helloworld", timeout=10)
    assert (response.status_code, response.text) == (200, "Hello world!")
    assert requests.get(f"{root}/nothing", timeout=10).status_code == 404
    assert call(API, "echo", "x")[0] == Ok("x", 1)
    assert "echo" in json.dumps(call(API, "stats")[0].result)
    for line in [
        "flaskReadpost1 called",
        "fakeWSGI1 called b'say \"hi\"'",
        "fakeWSGI2 called b'say \"hi\"'",
        "flaskReadpost2 called",
        'ppCB1 called say "hi"',
    ]:
        running.wait_line("^" + re.escape(line) + "$")


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
    assert big.result.startswith(
        "\nThey say that if you sat an infinite number of monkeys"
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert "echo" in json.dumps(call(api, "stats")[0].result)
    jsonp = requests.get(
        f"{api}/echo?data=test_data&jsonp=jsonpCallback_129620", timeout=10
    )
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
        [sys.executable, str(tmp_path / "pp.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: listening(port) or process.poll() is not None, 30, what="listening"
        )
        response = requests.post(
            f"http://127.0.0.1:{port}/api", json=request("fail"), timeout=10
        )
        assert (response.status_code, response.json()) == (
            200,
            {"rewritten": -32000, "path": "/api/"},
        )
        response = requests.post(
            f"http://127.0.0.1:{port}/nothing", json=request("x"), timeout=10
        )
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
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, timeout=60
        )
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"flaskJSONRPCServer: cannot listen on 127.0.0.1:{port}: port {port} is already in use\n"
    )


def test_hot_reload_and_parallel_executing(example):
    running = example("hotReload_and_parallelExecuting.py", [7001])
    start = {
        "parallelExec": False,
        "testVar1": 1234,
        "testVar2": [1234, 4321],
        "testVar3": "12344321",
    }
    assert call(API, "echo", "hi")[0] == Ok("hi", 1)  # in the process pool
    assert call(API, "echo2", "hi")[0] == Ok("hi", 1)  # dispatcherBackend='simple'
    # the process-pool method copies the main program's globals
    # (call.copyGlobal); the simple one reads them
    assert call(API, "testCopyGlobal")[0] == Ok(dict(start, parallelExec=True), 1)
    assert call(API, "testCopyGlobal2")[0] == Ok(start, 1)
    assert call(API, "testChangeGlobal2")[0] == Ok(None, 1)  # in the main process
    assert call(API, "testCopyGlobal2")[0] == Ok(dict(start, testVar1=2468), 1)
    assert call(API, "testCopyGlobal")[0] == Ok(
        dict(start, parallelExec=True, testVar1=2468), 1
    )
    # call.execute in the pool changes the main program's global too
    assert call(API, "testChangeGlobal")[0] == Ok(None, 1)
    assert call(API, "testCopyGlobal2")[0] == Ok(dict(start, testVar1=4936), 1)
    assert call(API, "testCopyGlobal")[0] == Ok(
        dict(start, parallelExec=True, testVar1=4936), 1
    )
    # reloading a process-pool method is refused (workers keep their code),
    # in safe mode: logged, and nothing changes
    assert call(API, "reloadApi")[0] == Ok(None, 1)
    running.wait_line(
        r"cannot reload 'testCopyGlobal': it runs in the process pool, whose "
        r"workers keep the code they started with; reload it with "
        r"dispatcherBackend='simple', or restart the server; nothing reloaded$"
    )
    assert call(API, "testCopyGlobal2")[0] == Ok(dict(start, testVar1=4936), 1)
    assert call(API, "stats")[0].result["methods"]["/api testCopyGlobal"]["count"] == 3


def test_parallel_executing(example):
    running = example("parallelExecuting.py", [7001], extra=["sexyPrime.py"])
    assert call(API, "echo", "hi")[0] == Ok("hi", 1)  # in the process pool
    assert call(API, "echo2", "hi")[0] == Ok("hi", 1)  # dispatcherBackend='simple'
    # call.eval runs in the main process, against its globals or the scope given
    assert call(API, "testScope")[0] == Ok(None, 1)
    for line in [
        '"globals" imported: __variable_from_parent__',
        '"testVar" passed to scope: overloaded_variable',
        '"testVar" passed to merged scope, "globals" imported: __overloaded_variable__',
        '"testVar" passed to scope (but overloaded with globals), "globals" imported: '
        "__variable_from_parent__",
        '"testVar" passed to scope, "testFunc" imported: __overloaded_variable__',
        '"testVar" passed to scope, "testFunc" not imported: '
        "\"Cant execute code: name 'testFunc' is not defined\"",
    ]:
        running.wait_line(r"\] " + re.escape(line) + "$")
    # with a callback: in the background (async), or waited for
    assert call(API, "testEvalCB")[0] == Ok("ok", 1)
    assert call_named(API, "testEvalCB", async_=False) == Ok("ok", 1)
    running.wait_line(
        r"\] > From eval-callback __variable_from_parent__ null$", count=2
    )
    # (the workers' lines reach the output through the main process: wait)
    running.wait_line(r"> After eval", count=2)
    assert running.output.count("> After eval") == 2
    # the server's methods that a worker process has not
    error = call(API, "testNotImplemented")[0]
    assert (error.code, error.message, error.data) == (
        -32000,
        'Method "reload" not implemented in parallel backend',
        {"type": "MainError"},
    )
    # call.copyGlobal: the main program's global as it is now
    error = call(API, "testCopyGlobal_proc")[0]
    assert (error.code, error.message) == (-32000, "max() arg is an empty sequence")
    assert call(API, "testCopyGlobal_gen")[0] == Ok(None, 1)  # a million numbers
    first = call(API, "testCopyGlobal_proc")[0].result
    found = re.fullmatch(
        r"max: (\d+\.\d+), min: (\d+\.\d+), average: (\d+\.\d+), geomean: inf", first
    )
    assert found, first
    high, low, average = map(float, found.groups())
    assert 0.99 <= low < average < high <= 99.99
    assert call(API, "testCopyGlobal_proc")[0] == Ok(first, 1)  # unchanged: cached
    assert call(API, "testCopyGlobal_gen")[0] == Ok(None, 1)
    assert call(API, "testCopyGlobal_proc")[0].result != first  # new numbers
    assert call(API, "testCopyGlobal_async")[0] == Ok("ok", 1)
    running.wait_line(r"\] > After copyGlobal$")
    running.wait_line(r"\] > From copyGlobal-callback false 1000000$")
    # call.execute changes the main program's globals: sexyNum (process pool)
    # and sexyNum2 (main process) share their statistics
    pattern = r"For 100 numbers finded 15 pairs in \d+\.\d seconds\. "
    answer = call(API, "sexyNum", 100)[0].result
    assert re.fullmatch(pattern + "Too low stats for find nearest", answer), answer
    for method in ("sexyNum2", "sexyNum"):
        answer = call(API, method, 100)[0].result
        assert re.fullmatch(
            pattern + r"For same settings average speed \d+\.\d seconds", answer
        ), answer
    # locking from a worker process: testLock locks the whole server for 5 s;
    # testWait (in the other worker... or after it) waits until it is unlocked
    answers = {}

    def run(method):
        answers[method] = call(API, method)[0]

    locker = threading.Thread(target=run, args=("testLock",))
    locker.start()
    running.wait_line(r"\] >>check locking from dispatcher true$")
    assert call(API, "echo2", "while locked")[0] == Ok("while locked", 1)
    locker.join(30)
    assert answers == {"testLock": Ok("test1", 1)}
    lines = running.lines
    locked = [i for i, line in enumerate(lines) if "check locking" in line][0]
    unlocked = [i for i, line in enumerate(lines) if line.endswith("] >>after locking")]
    assert unlocked and unlocked[0] > locked
    assert call(API, "testWait")[0] == Ok("test2", 1)
    running.wait_line(r"\] >>after wait\(\)$")
    assert call(API, "testSleep")[0] == Ok("ok", 1)
    running.wait_line(r"\] >>after sleep\(\)$")
    # restart(): the main loop stops the server, waits, starts it again
    assert call(API, "restart")[0] == Ok(None, 1)
    running.wait_line(r"^Restarting\.\.$")
    running.wait_line(r"^> stopped$")
    running.wait_line(r"^>restarted$")
    assert call(API, "echo", "again")[0] == Ok("again", 1)


def test_parallel_executing_manual_config(example):
    """Its exec backends, configured by hand, on the process pool."""
    running = example("parallelExecuting_manualConfig.py", [7001])
    ipc, ipc2 = "http://127.0.0.1:7001/ipc", "http://127.0.0.1:7001/ipc2"
    assert call(API, "echo", "hi")[0] == Ok("hi", 1)  # in myExecBackend's pool
    assert call(API, "echo2", "hi")[0] == Ok("hi", 1)  # 'simple'
    # slowTest computes for long in one worker; the other (poolSize=2) answers
    slow = {}

    def run_slow():
        body = request("slowTest", id=1)
        slow["answer"] = parse(requests.post(API, json=body, timeout=300).json())

    slower = threading.Thread(target=run_slow)
    slower.start()
    assert call(API, "echo", "meanwhile")[0] == Ok("meanwhile", 1)
    slower.join(300)
    assert slow == {"answer": Ok("ok", 1)}
    running.wait_line(r"\] >> slowTest complited!$")
    assert call(API, "testLong")[0] == Ok(2**64, 1)
    # its 400 MB eval is over the link's bound: a clear error
    # (the worker builds those 400 MB first: seconds on a busy machine)
    error = call(API, "bigData", timeout=120)[0]
    assert (error.code, error.message, error.data) == (
        -32000,
        "the request to the main process (419430477 bytes) is over the "
        "67108864-byte bound of the worker link",
        {"type": "MainError"},
    )
    running.wait_line(r"\] >> before sending to parent$")
    # IPC flags: one counter, shared by the process pool (/ipc) and the main
    # process (/ipc2, under _connection.myExecBackend)
    assert call(ipc, "capture")[0] == Ok("Captured (myExecBackend#child): 1", 1)
    assert call(ipc2, "capture")[0] == Ok("Captured (simple): 2", 1)
    assert call(ipc, "get")[0] == Ok("Value (myExecBackend#child): 2", 1)
    assert call(ipc, "check")[0] == Ok("Waiting ended (myExecBackend#child): 2", 1)
    assert call(ipc2, "release")[0] == Ok("Released (simple): 1", 1)
    # capture waits while the flag is at its limit (2): until a release
    assert call(ipc, "capture")[0] == Ok("Captured (myExecBackend#child): 2", 1)
    waiting = {}
    waiter = threading.Thread(
        target=lambda: waiting.update(answer=call(ipc, "capture")[0])
    )
    waiter.start()
    assert call(ipc2, "get")[0] == Ok("Value (simple): 2", 1)
    assert waiting == {}
    assert call(ipc2, "release")[0] == Ok("Released (simple): 1", 1)
    waiter.join(30)
    assert waiting == {"answer": Ok("Captured (myExecBackend#child): 2", 1)}
    assert call(ipc2, "clear")[0] == Ok("Cleared (simple): None", 1)
    assert call(ipc, "get")[0] == Ok("Value (myExecBackend#child): None", 1)
    assert call(ipc, "captureAsync")[0] == Ok(None, 1)
    running.wait_line(r"stdout: CaptureAsync ended \(myExecBackend#child\): 1$")
    assert call(ipc2, "getAsync")[0] == Ok(None, 1)
    # (printed from a thread: a log line, which starts with its date, may
    # come between it and its newline)
    running.wait_line(r"^GetAsync ended \(simple\): 1(?:(?!\d)|(?=\d{4}-\d\d-\d\d))")
    # stats2 runs in the pool and reads the main server's stats
    assert call(API, "stats2")[0].result["methods"]["/api echo"]["count"] == 2
