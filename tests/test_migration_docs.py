"""
The programs and command lines of docs/migrating/*.rst, run as they are
written: each as a process of its own (the fixed port it shows replaced by a
free one, as the console blocks of the manual are run), driven by the
clients its page names.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from twistbridge.testing import BridgeProcess, JsonLinesClient, free_port, wait_for

from .conftest import environ_with

ROOT = Path(__file__).resolve().parent.parent
MIGRATING = ROOT / "docs" / "migrating"
EXAMPLES = ROOT / "docs" / "examples"
BIN = Path(sys.executable).parent


def block_after(page: str, marker: str) -> str:
    """The source of the first code block of C{page} after the text C{marker}."""
    text = (MIGRATING / page).read_text("utf-8")
    assert marker in text, f"{page}: {marker!r}"
    rest = text.split(marker, 1)[1].split(".. code-block::", 1)[1]
    body = []
    indent = None
    for line in rest.splitlines()[1:]:
        if not line.strip():
            body.append("")
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        elif width < indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).strip() + "\n"


def replaced(source: str, shown: str, instead: str) -> str:
    """C{source} with the one occurrence of C{shown} replaced."""
    assert source.count(shown) == 1, shown
    return source.replace(shown, instead)


def env_with(*paths: Path) -> dict:
    env = environ_with(*paths, drop=["BGPY_TOKEN"])
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


@pytest.fixture
def page_program(program, tmp_path):
    """Start a Python program of a page (its source) in C{tmp_path}."""

    def start(source: str, port: int, *paths: Path):
        script = tmp_path / "program.py"
        script.write_text(source)
        running = program([sys.executable, script], tmp_path, env_with(*paths))
        running.listening(port)
        return running

    return start


# izzati --------------------------------------------------------------------


def test_the_izzati_program_serves_izzatis_frontend(page_program):
    from izzati import Frontend

    port = free_port()
    source = block_after("izzati.rst", "Change the import; nothing else has to change:")
    source = replaced(
        source, 'b.run(host="127.0.0.1")', f'b.run(host="127.0.0.1", port={port})'
    )
    server = page_program(source, port)
    answer = Frontend(f"http://127.0.0.1:{port}/").send(
        {"name": "ann"}, ("a.txt", io.BytesIO(b"hello"))
    )
    assert answer == {"status": "yes"}
    wait_for(
        lambda: "{'name': 'ann'} ['a.txt']" in server.output,
        10,
        what="the callback's print",
    )


# flaskJSONRPCServer --------------------------------------------------------


def test_the_flaskjsonrpcserver_program_answers_as_before(page_program):
    from jsonrpcclient import Ok, parse, request

    port = free_port()
    source = block_after(
        "jsonrpc.rst", "Change the import; the rest of the program stays:"
    )
    source = replaced(source, '("127.0.0.1", 7001)', f'("127.0.0.1", {port})')
    page_program(source, port)
    base = f"http://127.0.0.1:{port}"

    def call(path, method, params=None):
        response = requests.post(
            base + path, json=request(method, params=params), timeout=10
        )
        return parse(response.json())

    answer = call("/api", "echo")
    assert isinstance(answer, Ok) and answer.result == "Hello world!"
    answer = call("/api", "helloworld", ["hi"])
    assert isinstance(answer, Ok) and answer.result == "hi"
    answer = call("/api2", "square", [7])
    assert isinstance(answer, Ok) and answer.result == 49
    # The JSONP fallback, as the page's text says.
    jsonp = requests.get(base + "/api/echo?data=x&jsonp=cb", timeout=10)
    assert (jsonp.status_code, jsonp.text) == (200, 'cb("x");')
    # cors=True: a preflight from another origin is approved.
    preflight = requests.options(
        base + "/api",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
        },
        timeout=10,
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"


# Igor ------------------------------------------------------------------------


def test_the_igor_program_serves_igor_clients(page_program):
    import websocket

    port = free_port()
    source = block_after("igor.rst", "With twistbridge, the same program:")
    source = replaced(source, '{"port": 5678}', f'{{"port": {port}}}')
    server = page_program(source, port)
    assert "default port: 5678" in server.output
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}", timeout=10)
    try:
        ws.send(
            json.dumps(
                {"streamId": "s1", "action": "math.add", "data": {"a": 2, "b": 3}}
            )
        )
        ws.send(json.dumps({"streamId": "s2", "action": "remember", "data": "x"}))
        mine, counts = [], []
        while len(mine) < 4 or len(counts) < 2:
            message = json.loads(ws.recv())
            if message["streamId"] == "counter_process":
                assert message["action"] == "count"
                counts.append(message["data"])
            else:
                mine.append(message)
        assert [m for m in mine if m["streamId"] == "s1"] == [
            {"streamId": "s1", "data": 5},
            {"streamId": "s1", "close": True},
        ]
        assert [m for m in mine if m["streamId"] == "s2"] == [
            {"streamId": "s2", "data": ["last"]},
            {"streamId": "s2", "close": True},
        ]
        assert counts == list(range(counts[0], counts[0] + len(counts)))
    finally:
        ws.close()


# bgpy ------------------------------------------------------------------------


def commands(page: str, marker: str, port: int) -> list:
    """The command lines of the shell block after C{marker}, on C{port}."""
    lines = block_after(page, marker).splitlines()
    return [
        shlex.split(line.replace("54321", str(port))) for line in lines if line.strip()
    ]


def bgpy_tasks():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import tasks
    finally:
        sys.path.remove(str(EXAMPLES))
    return tasks


def test_the_bgpy_command_lines_serve_and_terminate(program):
    import bgpy

    port = free_port()
    serve, terminate = commands("bgpy.rst", "becomes (and either", port)
    assert serve[:3] == ["python", "-m", "twistbridge.bgpy"]
    server = program(serve, EXAMPLES, env_with())
    server.listening(port)
    client = bgpy.Client("127.0.0.1", port, log_level="CRITICAL")
    # The init file's init_task already ran: straight to EXEC.
    answer = client.execute(
        {"command": "increase", "value_change": 5}, await_response=True
    )
    assert answer == {"value": 1005, "await_response": False}
    done = subprocess.run(
        terminate,
        cwd=str(EXAMPLES),
        env=env_with(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert server.process.wait(20) == 0


def test_the_allowed_module_is_what_bgpys_client_may_name(program):
    import bgpy

    tasks = bgpy_tasks()
    port = free_port()
    standalone, bridge = commands("bgpy.rst", "importable from the current", port)
    server = program(standalone, EXAMPLES, env_with())
    try:
        server.listening(port)
        client = bgpy.Client("127.0.0.1", port, log_level="CRITICAL")
        assert client.initialize(tasks.init_task, tasks.exec_task, tasks.exit_task) == {
            "message": "Initialization successful.",
            "await_response": False,
        }
        assert client.execute({"await_response": True}, await_response=True) == {
            "value": 1000,
            "await_response": False,
        }
    finally:
        server.stop()
    assert bridge[:4] == ["twistd", "-n", "bridge", "--bgpy-allow-module"]
    with BridgeProcess(bridge[3:], env=env_with(EXAMPLES), cwd=str(EXAMPLES)) as twistd:
        host, bgpy_port = twistd.addresses["bgpy"].rsplit(":", 1)
        client = bgpy.Client(host, int(bgpy_port), log_level="CRITICAL")
        # The demo app's tasks run; after its EXIT, an INIT may name these.
        client.terminate()
        client = bgpy.Client(host, int(bgpy_port), log_level="CRITICAL")
        assert client.initialize(tasks.init_task, tasks.exec_task, tasks.exit_task) == {
            "message": "Initialization successful.",
            "await_response": False,
        }
        answer = client.execute(
            {"command": "increase", "value_change": 1}, await_response=True
        )
        assert answer == {"value": 1001, "await_response": False}


def test_twistd_bridge_serves_the_init_file():
    port = free_port()
    (line,) = commands(
        "bgpy.rst", "served by the bridge next to the other protocols:", port
    )
    assert line[:3] == ["twistd", "-n", "bridge"]
    with BridgeProcess(line[3:], env=env_with(), cwd=str(EXAMPLES)) as server:
        assert server.addresses["bgpy"] == f"127.0.0.1:{port}"
        with JsonLinesClient(server.addresses["bgpy"]) as client:
            client.send(
                "EXEC", command="increase", value_change=10, await_response=True
            )
            assert client.line() == {
                "type": "OK",
                "args": {"message": "Received 'EXEC'"},
            }
            assert client.line() == {"type": "OK", "args": {"value": 1010}}
