"""
bgpy on `twistd bridge`: the real bgpy 0.3.1 Client against the demo tasks
and a test app; hostile inputs while a well-behaved client keeps working.
"""

import json
import os
import pickle
import threading
import time

import bgpy
import bgpy_tasks
import bgpy_tasks_other
from bgpy.core.message import Message, MessageType

from twistbridge import demo
from twistbridge.testing import BridgeTestClient

DEMO = (demo.init_task, demo.exec_task, demo.exit_task)
TASKS = (bgpy_tasks.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task)
REFUSED_SYSTEM = (
    "Refused: 'posix.system' is not allowed: only plain Python functions may be "
    "named (no builtins, C functions, classes)."
)


def second(**args):
    return {**args, "await_response": False}


def real(server, token=None):
    return bgpy.Client(
        "127.0.0.1", server.port("bgpy"), token=token, log_level="CRITICAL"
    )


def test_demo_tasks(bridge_process):
    server = bridge_process()
    client = real(server)
    # init_task ran when the service started.
    assert client.initialize(*DEMO) == second(message="Already initialized.")
    assert client.execute({"command": "increase", "value_change": 10}) == {
        "message": "Received 'EXEC'"
    }
    assert client.execute({"command": "decrease", "value_change": 100}) == {
        "message": "Received 'EXEC'"
    }
    assert client.terminate(await_response=True) == second(
        request_count=3, value=910, status="Exited."
    )
    # EXIT reset the state; the bridge keeps serving.
    assert client.execute({"command": "increase", "value_change": 1}) == {
        "message": "Not initialized."
    }
    assert server.stop() in (0, -15)  # SIGTERM re-raised after a clean stop


def ok(message, **args):
    return {"type": "OK", "args": {"message": message, **args}}


def test_demo_tasks_after_exit_in_memory():
    """
    The rest of the demo's bgpy life, in bgpy's own format through the
    in-memory client (the answers a real client reads are the same bytes).
    """
    with BridgeTestClient(demo.bridge) as client:
        bg = client.bgpy("bgpy")
        # The demo's exec_task never responds: an awaiting client is not left hanging.
        assert bg.call("EXEC", command="noop", await_response=True) == [
            ok("Received 'EXEC'"),
            ok("exec_task sent no response.", await_response=False),
        ]
        assert bg.call("EXIT", await_response=True) == [
            ok("Received 'EXIT'"),
            {
                "type": "OK",
                "args": second(request_count=2, value=1000, status="Exited."),
            },
        ]
        # INIT runs init_task again, EXIT ends it again; tasks from a module
        # the demo does not allow are refused.
        bg = client.bgpy("bgpy")
        init = dict(zip(("init_task", "exec_task", "exit_task"), DEMO))
        assert bg.call("INIT", **init) == [
            ok("Received 'INIT'"),
            ok("Initialization successful.", await_response=False),
        ]
        assert bg.call("EXIT", await_response=True)[1]["args"] == second(
            request_count=1, value=1000, status="Exited."
        )
        bg = client.bgpy("bgpy")
        init = dict(zip(("init_task", "exec_task", "exit_task"), TASKS))
        assert bg.call("INIT", **init) == [
            ok("Received 'INIT'"),
            {
                "type": "ERROR",
                "args": second(
                    message="Refused: 'bgpy_tasks.init_task' is not allowed: start "
                    "the server with --bgpy-allow-module bgpy_tasks (allowed now: "
                    "twistbridge._demo_tasks)."
                ),
            },
        ]


def test_token_file_and_exit_task_at_shutdown(bridge_process, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("t0k3n\n")
    record = tmp_path / "exit.json"
    server = bridge_process(
        ["--app", "bgpy_app:bridge", "--bgpy-token-file", str(token_file)],
        BGPY_TEST_EXIT_FILE=str(record),
        BGPY_TOKEN="ignored-when-a-token-file-is-given",
    )
    assert real(server, "wrong").execute(
        {"command": "get"}, await_response=True
    ) == second(message="Invalid client authentication.")
    good = real(server, "t0k3n")
    assert good.execute({"command": "increase", "value_change": 7}) == {
        "message": "Received 'EXEC'"
    }
    assert good.execute({"command": "get"}, await_response=True) == second(
        request_count=2, value=1007
    )
    # Initialized at start: "Already initialized." comes before the module
    # check (the task is not even looked at).
    assert good.initialize(bgpy_tasks_other.init_task, *TASKS[1:]) == second(
        message="Already initialized."
    )
    assert not record.exists()
    assert server.stop() in (0, -15)  # SIGTERM re-raised after a clean stop
    # SIGTERM ran exit_task on the live state (graceful shutdown).
    assert json.loads(record.read_text()) == {
        "request_count": 3,
        "value": 1007,
        "status": "Exited.",
    }


def test_pacing_never_joins_two_frames(bridge_process, raw):
    """
    bgpy's client reads with a fixed buffer: the server leaves the pause
    bgpy's own server makes after each frame read or written.
    """
    server = bridge_process(["--app", "bgpy_app:bridge"])
    r = raw(server.port("bgpy"))
    sent = time.monotonic()
    r.bgpy(
        pickle.dumps(Message(MessageType.AUTH, {"token": None, "await_response": True}))
    )
    first = r.frame()
    t_first = time.monotonic()
    assert r.buffer == b""  # nothing behind the first frame
    second_frame = r.frame()
    t_second = time.monotonic()
    assert (first.type, first.args) == (MessageType.OK, {"message": "Received 'AUTH'"})
    assert (second_frame.type, second_frame.args) == (
        MessageType.OK,
        second(message="Authentication successful."),
    )
    assert t_first - sent >= 0.08
    assert t_second - t_first >= 0.09


class GoodClient(threading.Thread):
    """The real bgpy client doing EXEC after EXEC until told to stop."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.client = real(server)
        self.answers = []
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.answers.append(
                    self.client.execute({"command": "increase", "value_change": 1})
                )
            except Exception as e:  # pragma: no cover - reported by the test
                self.errors.append(repr(e))


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_hostile_inputs_while_a_good_client_works(bridge_process, raw, tmp_path):
    server = bridge_process(["--app", "bgpy_app:bridge"])
    port = server.port("bgpy")
    good = GoodClient(server)
    good.start()
    try:
        # 1. A pickle whose payload would run os.system: refused, never run.
        marker = tmp_path / "pwned"
        r = raw(port)
        r.bgpy(pickle.dumps(Message(MessageType.EXEC, {"x": Evil(marker)})))
        refusal = r.refusal()
        assert (refusal.type, refusal.args) == (
            MessageType.ERROR,
            {"message": REFUSED_SYSTEM},
        )
        assert r.closed()
        assert not marker.exists()

        # 2. A name imported into an allowed module (bgpy_tasks.system is os.system).
        r = raw(port)
        payload = b"\x80\x04\x8c\x0abgpy_tasks\x8c\x06system\x93\x8c\x07echo hi\x85R."
        r.bgpy(payload)
        assert r.frame().args == {
            "message": "Refused: 'bgpy_tasks.system' is not allowed: only plain "
            "Python functions may be named (no builtins, C functions, classes)."
        }

        # 3. An allowed task function called by the pickle itself (REDUCE).
        r = raw(port)
        payload = b"\x80\x04\x8c\x0abgpy_tasks\x8c\x09init_task\x93)R."
        r.bgpy(payload)
        assert r.frame().args["message"].startswith("Invalid message: TypeError:")

        # 4. A header announcing 10**12 bytes: refused before any buffer exists.
        r = raw(port)
        r.send(f"{10**12:<16}".encode())
        assert r.frame().args == {
            "message": "Message of 1000000000000 bytes exceeds the limit of "
            "16777216 bytes."
        }
        assert r.closed()

        # 5. A header that is not a number.
        r = raw(port)
        r.send(b"12abc\x00\x01garbage!!!!!!")
        assert r.frame().args["message"].startswith("Invalid header b'12abc")
        assert r.closed()

        # 6. A connection cut in the middle of a message.
        r = raw(port)
        r.send(b"100             " + b"QUJD" * 5)
        r.close()

        # 7. Garbage bytes: a JSON-lines error; the connection stays usable.
        r = raw(port)
        r.send(b"\x00\xff\xfe garbage \x80\n")
        error = r.line()
        assert error["type"] == "ERROR"
        assert error["args"]["message"].startswith("Invalid JSON:")
        r.json("EXEC", command="get", await_response=True)
        assert r.line() == {"type": "OK", "args": {"message": "Received 'EXEC'"}}
        state = r.line()
        assert state["type"] == "OK"
        assert state["args"]["value"] == 1000 + state["args"]["request_count"] - 1

        # The good client got on with its work meanwhile.
        count = len(good.answers)
        from twistbridge.testing import wait_for

        wait_for(lambda: len(good.answers) >= count + 2, 10, what="the good client")
    finally:
        good.stop.set()
        good.join(10)
    assert good.errors == []
    assert len(good.answers) >= 3
    assert all(a == {"message": "Received 'EXEC'"} for a in good.answers)
    assert "connection closed in the middle of a message" in server.output
    assert server.stop() in (0, -15)  # SIGTERM re-raised after a clean stop


def test_the_demo_offers_its_bgpy_tasks_only():
    from twistbridge import _demo_tasks

    policy = demo.bridge.runtime().bgpy.allow_modules
    assert "twistbridge._demo_tasks" in policy
    assert "twistbridge.demo" not in policy
    assert demo.init_task is _demo_tasks.init_task
    handlers = dict(
        zip(("init_task", "exec_task", "exit_task"), (demo.upload, demo.echo, demo.add))
    )
    # The demo's tasks run from the start; once EXIT reset them, the demo's
    # other handlers (plain functions too, but not tasks) are refused.
    with BridgeTestClient(demo.bridge) as client:
        assert client.bgpy("bgpy").call("INIT", **handlers)[1]["args"] == second(
            message="Already initialized."
        )
        client.bgpy("bgpy").call("EXIT")
        answer = client.bgpy("bgpy").call("INIT", **handlers)[1]
        assert answer["type"] == "ERROR"
        assert answer["args"]["message"].startswith(
            "Refused: 'twistbridge.demo.upload' is not allowed: start the server "
            "with --bgpy-allow-module twistbridge.demo"
        )
