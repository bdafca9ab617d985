"""
The real bgpy 0.3.1 Client against `python -m twistbridge.bgpy server`, and
this package's own Client and command line.
"""

import os
import subprocess
import sys

import bgpy
import bgpy_tasks
import bgpy_tasks_other

from twistbridge.bgpy import Client as CompatClient
from twistbridge.testing import wait_for

TASKS = (bgpy_tasks.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task)
REFUSED_OTHER = (
    "Refused: 'bgpy_tasks_other.init_task' is not allowed: start the server "
    "with --allow-module bgpy_tasks_other (allowed now: bgpy_tasks)."
)


def second(**args):
    """A second response as bgpy's own server words it (it adds the flag)."""
    return {**args, "await_response": False}


def real(port, token=None):
    return bgpy.Client("127.0.0.1", port, token=token, log_level="CRITICAL")


def test_initialize_execute_terminate(standalone):
    server = standalone("--allow-module", "bgpy_tasks")
    client = real(server.port)
    # A task from a module not allowed: refused, nothing initialized, the
    # server still serves.
    answer = client.initialize(
        bgpy_tasks_other.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task
    )
    assert answer == second(message=REFUSED_OTHER)
    assert client.execute({"command": "get"}) == {"message": "Not initialized."}
    assert REFUSED_OTHER in server.output
    assert client.initialize(*TASKS) == second(message="Initialization successful.")
    assert client.initialize(*TASKS) == second(message="Already initialized.")
    assert client.execute({"command": "increase", "value_change": 10}) == {
        "message": "Received 'EXEC'"
    }
    assert client.execute({"command": "decrease", "value_change": 100}) == {
        "message": "Received 'EXEC'"
    }
    assert client.execute({"command": "get"}, await_response=True) == second(
        request_count=3, value=910
    )
    assert client.terminate(await_response=True) == second(
        request_count=4, value=910, status="Exited."
    )
    assert server.wait(10) == 0


def test_token_right_and_wrong(standalone):
    server = standalone("--allow-module", "bgpy_tasks", BGPY_TOKEN="s3cret")
    assert real(server.port, token="wrong").initialize(*TASKS) == second(
        message="Invalid client authentication."
    )
    assert real(server.port).execute({"command": "get"}) == second(
        message="Invalid client authentication."
    )
    good = real(server.port, token="s3cret")
    assert good.initialize(*TASKS) == second(message="Initialization successful.")
    assert good.execute({"command": "get"}, await_response=True) == second(
        request_count=1, value=1000
    )
    # A wrong token does not terminate.
    assert real(server.port, token="nope").terminate() == second(
        message="Invalid client authentication."
    )
    assert server.process.poll() is None
    assert good.terminate() == {"message": "Received 'EXIT'"}
    assert server.wait(10) == 0


def test_init_file_initializes_at_start(standalone, tmp_path):
    path = os.path.join(os.path.dirname(bgpy_tasks.__file__), "bgpy_tasks.py")
    log_file = tmp_path / "bgpy.log"
    server = standalone("--init-file", path, "--log-file", str(log_file))
    client = real(server.port)
    # The module of --init-file is allowed: INIT is understood, and refused
    # only because init_task already ran.
    assert client.initialize(*TASKS) == second(message="Already initialized.")
    assert client.execute({"command": "increase", "value_change": 5}) == {
        "message": "Received 'EXEC'"
    }
    assert client.execute({"command": "fail"}, await_response=True) == second(
        message="exec_task failed: ValueError: asked to fail"
    )
    assert client.execute({"command": "get"}, await_response=True) == second(
        request_count=3, value=1005
    )
    assert "Traceback" in server.output  # to the log, never to the client
    assert "bgpy listening on 127.0.0.1:" in log_file.read_text()
    # `python -m twistbridge.bgpy terminate HOST PORT` stops it.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "twistbridge.bgpy",
            "terminate",
            "127.0.0.1",
            str(server.port),
        ],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == b"{'message': \"Received 'EXIT'\"}"
    assert server.wait(10) == 0


def test_compat_client_against_this_server(standalone):
    server = standalone("--allow-module", "bgpy_tasks")
    client = CompatClient("127.0.0.1", server.port, timeout=10)
    assert client.execute({"command": "get"}) == {"message": "Not initialized."}
    assert client.initialize(*TASKS) == second(message="Initialization successful.")
    assert client.execute({"command": "increase", "value_change": 1}, True) == second(
        message="exec_task sent no response."
    )
    assert client.execute({"command": "pid"}, await_response=True) == second(
        pid=server.process.pid
    )
    assert client.terminate(await_response=True)["status"] == "Exited."
    assert server.wait(10) == 0


def test_compat_client_against_original_server(environ, monkeypatch):
    """This package's Client also talks to bgpy's own server."""
    import socket

    import twistbridge.bgpy._compat

    # bgpy's own server needs each frame to arrive alone, and both bgpy's
    # client and ours pace frames 0.1 s apart: on a machine whose cores are
    # all busy, two frames can meet in its buffer and it hangs for good.  A
    # wider pause keeps this test about the protocol, not the scheduler.
    monkeypatch.setattr(twistbridge.bgpy._compat, "BUFFER_TIME", 1.0)

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    # (bgpy's own `bgpy server` script fails with current typer/click: run
    # its Server class directly.)
    code = f"from bgpy import Server; Server('127.0.0.1', {port}, log_level='WARNING').run()"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = CompatClient("127.0.0.1", port, timeout=10)

        # bgpy's example tasks (they use bgpy's own respond()).
        from bgpy.example import tasks

        def initialized():
            try:
                return client.initialize(
                    tasks.init_task, tasks.exec_task, tasks.exit_task
                )
            except ConnectionRefusedError:
                return None

        # (No probe connection first: bgpy's server dies on a client that
        # closes without a word.)
        assert wait_for(initialized, 20, what="bgpy's server") == second(
            message="Initialization successful."
        )
        assert client.execute({"command": "increase", "value_change": 10}) == {
            "message": "Received 'EXEC'"
        }
        assert client.terminate(await_response=True) == second(
            request_count=2, value=1010, status="Exited."
        )
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_readme_helpers_start_a_background_server():
    import socket

    from twistbridge.bgpy import execute, initialize, terminate, token_create

    token = token_create()
    assert len(token) == 86  # 64 random bytes, URL-safe base64
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    try:
        assert initialize(*TASKS, port=port, token=token, log_level="WARNING") == (
            second(message="Initialization successful.")
        )
        assert execute(
            {"command": "increase", "value_change": 10}, port=port, token=token
        ) == {"message": "Received 'EXEC'"}
        assert execute(
            {"command": "get"}, port=port, token="bad", await_response=True
        ) == (second(message="Invalid client authentication."))
    finally:
        final = terminate(port=port, token=token, await_response=True)
    assert final == second(request_count=2, value=1010, status="Exited.")
