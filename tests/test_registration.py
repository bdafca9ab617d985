"""
Registration: each handler is checked against the way its protocol calls
it, replacing is asked for, and process-pool handlers registered with the
decorator forms reach their workers (the pickle check runs at start).
"""

import json
import subprocess

import pytest
import requests

from twistbridge import Bridge
from twistbridge.app import RegistrationError
from twistbridge.testing import BridgeProcess, twistd_path

# call shapes -------------------------------------------------------------------


def refusal(register):
    with pytest.raises(RegistrationError) as info:
        register()
    return str(info.value)


def test_igor_action_must_accept_out_data_and_kwargs():
    bridge = Bridge()

    def greet(data):
        pass

    def strict(out, data):
        pass

    assert refusal(lambda: bridge.igor_action("greet", greet)) == (
        "greet(data) cannot be an Igor action: it must accept (out, data, **kwargs), "
        "e.g. def greet(out, data, **kwargs)"
    )
    assert refusal(lambda: bridge.igor_action("strict", strict)) == (
        "strict(out, data) cannot be an Igor action: it must accept "
        "(out, data, **kwargs), e.g. def strict(out, data, **kwargs)"
    )
    assert refusal(lambda: bridge.igor_action("anon", lambda x: x)) == (
        "<lambda>(x) cannot be an Igor action: it must accept (out, data, **kwargs), "
        "e.g. def action(out, data, **kwargs)"
    )

    def named(out, data, session, scope, client_id):
        pass

    bridge.igor_action("named", named)
    bridge.igor_action("lambda", lambda out, data, **kw: None)
    assert sorted(bridge.igor_handlers) == ["lambda", "named"]


def test_izzati_callback_must_accept_text_data_and_its_arguments():
    bridge = Bridge()

    def upload(text):
        pass

    def cb(text, data):
        pass

    assert refusal(lambda: bridge.izzati(upload)) == (
        "upload(text) cannot be the izzati callback: it must accept (text, data), "
        "e.g. def upload(text, data)"
    )
    assert refusal(lambda: bridge.izzati(cb, args=(1,), kwargs={"key": 2})) == (
        "cb(text, data) cannot be the izzati callback: it must accept "
        "(text, data, arg1, key=...), e.g. def cb(text, data, arg1, key=None)"
    )
    assert bridge.izzati_registration is None
    bridge.izzati(cb)
    assert bridge.izzati_registration.handler.func is cb


def test_bgpy_tasks_must_accept_what_bgpy_passes():
    bridge = Bridge()

    def init_task(client):
        return {}

    def exec_task(client, state, exec_args):
        return state

    def exit_task(client, state, exit_args):
        pass

    def bad_exec(state, args):
        return state

    def bad_init(a, b):
        return {}

    assert refusal(lambda: bridge.bgpy_tasks(init_task, bad_exec, exit_task)) == (
        "bad_exec(state, args) cannot be the bgpy exec_task: it must accept "
        "(client, state, exec_args), e.g. def bad_exec(client, state, exec_args)"
    )
    assert refusal(lambda: bridge.bgpy_tasks(bad_init, exec_task, exit_task)) == (
        "bad_init(a, b) cannot be the bgpy init_task: it must accept (client), "
        "e.g. def bad_init(client)"
    )
    assert refusal(
        lambda: bridge.bgpy_tasks(init_task, exec_task, exec_task.__name__)
    ) == ("the bgpy exit_task 'exec_task' is not callable")
    # bgpy's own server calls init_task() with no argument: both forms go.
    bridge.bgpy_tasks(lambda: {}, exec_task, exit_task)
    bridge.bgpy_tasks(init_task, exec_task, exit_task, replace=True)
    assert bridge.bgpy.init_task is init_task


def test_json_rpc_methods_take_any_signature():
    bridge = Bridge()
    bridge.rpc_function(lambda: 1, name="none")
    bridge.rpc_function(lambda *a, **k: 1, name="any")
    bridge.rpc_function(lambda a, b=2, *, c: 1, name="kw")
    assert [m.name for m in bridge.rpc_methods] == ["none", "any", "kw"]


# decorator forms and replacing ---------------------------------------------------------


def test_bare_igor_action_registers_under_the_function_name():
    bridge = Bridge()

    @bridge.igor_action
    def greet(out, data, **kwargs):
        pass

    assert greet.__name__ == "greet"  # the decorator returns the function
    assert bridge.igor_handlers["greet"].func is greet
    assert refusal(lambda: bridge.igor_action(42)) == (
        "igor_action needs an action name (a non-empty string), not 42: use "
        '@bridge.igor_action("name") or a bare @bridge.igor_action'
    )


def test_replacing_a_registration_must_be_asked_for():
    bridge = Bridge()

    @bridge.izzati
    def first(text, data):
        pass

    def second(text, data):
        pass

    assert refusal(lambda: bridge.izzati(second)) == (
        "second cannot be the izzati callback: first already is; pass replace=True "
        "to replace it"
    )
    bridge.izzati(second, replace=True)
    assert bridge.izzati_registration.handler.func is second

    def echo(out, data, **kwargs):
        pass

    def echo2(out, data, **kwargs):
        pass

    bridge.igor_action("echo", echo)
    assert refusal(lambda: bridge.igor_action("echo", echo2)) == (
        "echo2 cannot be the Igor action 'echo': echo already is; pass replace=True "
        "to replace it"
    )
    bridge.igor_action("echo", echo2, replace=True)
    assert bridge.igor_handlers["echo"].func is echo2

    def add(a, b):
        return a + b

    def plus(a, b):
        return a + b

    bridge.rpc_function(add)
    assert refusal(lambda: bridge.rpc_function(plus, name="add")) == (
        "plus cannot be the JSON-RPC method 'add' at /rpc: add already is; "
        "pass replace=True to replace it"
    )
    bridge.rpc_function(plus, name="add", path="/api")  # another path: no clash
    bridge.rpc_function(plus, name="add", replace=True)
    assert [(m.path, m.name, m.handler.func) for m in bridge.rpc_methods] == [
        ("/api", "add", plus),
        ("/rpc", "add", plus),
    ]

    bridge.igor_process("clock", lambda output: None)
    assert refusal(lambda: bridge.igor_process("clock", lambda output: None)) == (
        "an Igor process 'clock' is already registered; pass replace=True to replace it"
    )

    def init_task(client):
        return {}

    def exec_task(client, state, exec_args):
        return state

    bridge.bgpy_tasks(init_task, exec_task, exec_task)
    assert refusal(lambda: bridge.bgpy_tasks(init_task, exec_task, exec_task)) == (
        "bgpy tasks are already set (init_task init_task); pass replace=True to "
        "replace them"
    )


# process-pool handlers -------------------------------------------------------------------


def test_process_handlers_registered_with_decorators_answer(apps_env):
    import websocket
    from izzati import Frontend

    args = ["--app", "process_decorators_app:bridge", "--bgpy-port", "none"]
    with BridgeProcess(args, env=apps_env) as server:
        here = server.process.pid
        body = {"jsonrpc": "2.0", "method": "crunch", "params": [21], "id": 1}
        result = requests.post(server.url("/rpc"), json=body, timeout=30).json()
        assert result["result"]["double"] == 42
        assert result["result"]["pid"] != here
        answer = Frontend(server.url("/")).send({"name": "ada"})
        assert answer["text"] == {"name": "ada"}
        assert answer["pid"] != here
        ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=30)
        try:
            ws.send(json.dumps({"streamId": 1, "action": "crunch", "data": 4}))
            first = json.loads(ws.recv())
            assert first["data"]["double"] == 8 and first["data"]["pid"] != here
            assert json.loads(ws.recv()) == {"streamId": 1, "close": True}
        finally:
            ws.close()


def test_unpicklable_process_handler_is_a_one_line_startup_error(apps_env):
    result = subprocess.run(
        [
            twistd_path(),
            "-n",
            "bridge",
            "--app",
            "unpicklable_app:bridge",
            "--port",
            "0",
            "--igor-port",
            "none",
            "--bgpy-port",
            "none",
        ],
        capture_output=True,
        text=True,
        env=apps_env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "twistd bridge: error: --app unpicklable_app:bridge: nested (JSON-RPC method "
        "'nested' at /rpc) cannot run_in='process': make_handler.<locals>.nested is "
        "defined inside a function, so a worker process cannot import it; define it "
        "with def at the top level of a module"
    ]


def test_embedding_checks_process_handlers_when_the_service_is_built():
    from twistbridge.offload import NotPicklable

    bridge = Bridge()
    bridge.rpc_function(lambda: 1, name="anon", run_in="process")
    with pytest.raises(NotPicklable) as info:
        bridge.service()
    assert str(info.value) == (
        "<lambda> (JSON-RPC method 'anon' at /rpc) cannot run_in='process': it is a "
        "lambda, which a worker process cannot import; define it with def at the top "
        "level of a module"
    )


# the documented example ----------------------------------------------------------------


def test_the_registration_example_in_the_docs_runs_as_shown():
    import os
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    example = os.path.join(root, "docs", "examples", "handlers_registration.py")
    result = subprocess.run(
        [sys.executable, example], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    shown = [
        "shout(data) cannot be an Igor action: it must accept (out, data, **kwargs), "
        "e.g. def shout(out, data, **kwargs)",
        "upload cannot be the izzati callback: upload_v2 already is; pass "
        "replace=True to replace it",
    ]
    assert result.stdout.splitlines() == shown
    with open(os.path.join(root, "docs", "handlers.rst"), encoding="utf-8") as f:
        page = f.read()
    for line in shown:
        assert f"\n   {line}\n" in page
    # The busy answer the page shows is the one the server sends
    # (test_offload.test_twistd_full_queue_answers_server_busy_on_every_protocol).
    assert (
        '"error": {"code": -32003, "message": "Server busy",\n'
        '              "data": "server busy: 2 calls are waiting for the thread pool; '
        'try again later"},'
    ) in page
