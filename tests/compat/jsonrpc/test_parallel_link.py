"""
What a flaskJSONRPCServer method in the process pool reaches in the main
program over the worker link, beyond the example programs: copyGlobal of
several names and of the import-time copy, execute merging only the names
asked, results through fixJSON, and the errors a worker method gets.
Over real sockets, with real worker processes.
"""

import textwrap

import pytest
import requests
from flask_programs import start_program, stop_program

pytestmark = pytest.mark.one_worker

PROGRAM = textwrap.dedent(
    """
    import decimal, os
    from twistbridge.jsonrpc import flaskJSONRPCServer

    counter = 1
    names = ["a"]

    def grow(_connection=None):
        global counter
        counter += 1
        names.append("b")

    def copies(_connection=None):
        call = _connection.call
        return [call.copyGlobal(["counter", "names", "missing"]),
                call.copyGlobal("counter", actual=False), os.getpid() != call.eval("os.getpid()")]

    def merges(_connection=None):
        _connection.call.execute("counter = counter * 10\\nother = 5", mergeGlobals=["counter"])
        return _connection.call.eval("[counter, 'other' in globals()]")

    def converts(_connection=None):
        return _connection.call.eval("decimal.Decimal('1.5')")

    def fails(_connection=None):
        try:
            _connection.call.eval("1/0")
        except Exception as e:
            first = [type(e).__name__, str(e)]
        try:
            _connection.nothing
        except AttributeError as e:
            second = str(e)
        return [first, second, _connection.parallelType, _connection.execBackendId]

    if __name__ == "__main__":
        server = flaskJSONRPCServer(("127.0.0.1", {port}), dispatcherBackend="parallelWithSocket")
        server.registerFunction(grow, path="/api", dispatcherBackend="simple")
        for f in (copies, merges, converts, fails):
            server.registerFunction(f, path="/api")
        server.serveForever()
    """
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    process, url = start_program(
        tmp_path_factory.mktemp("link") / "link.py",
        lambda port: PROGRAM.format(port=port),
    )
    yield f"{url}/api"
    stop_program(process)


def call(url, method):
    body = {"jsonrpc": "2.0", "method": method, "id": 1}
    return requests.post(url, json=body, timeout=30).json()


def test_copy_global_and_execute(url):
    # (one test: these change the program's globals, in this order)
    assert call(url, "copies")["result"] == [[1, ["a"], None], 1, True]
    assert call(url, "grow")["result"] is None  # in the main program
    assert call(url, "copies")["result"] == [[2, ["a", "b"], None], 1, True]
    # execute merges back only the names asked
    assert call(url, "merges")["result"] == [20, False]
    assert call(url, "copies")["result"] == [[20, ["a", "b"], None], 1, True]


def test_results_from_the_main_program_go_through_fixjson(url):
    assert call(url, "converts")["result"] == "1.5"


def test_the_errors_a_worker_method_gets(url):
    keys = (
        "allowCompress, call, cookies, cookiesOut, dispatcherName, execBackend, "
        "execBackendId, headers, headersOut, ip, jsonp, method, notify, "
        "parallelId, parallelPoolSize, parallelType, path, server, serverName"
    )
    assert call(url, "fails")["result"] == [
        ["MainError", "Cant execute code: division by zero"],
        f"_connection has no 'nothing' in a worker process: it has {keys}",
        "withSocket",
        "parallelWithSocket",
    ]
