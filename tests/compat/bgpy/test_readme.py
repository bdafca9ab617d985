"""
bgpy's README examples (bgpy_README.rst, unchanged), run end to end against
twistbridge.bgpy with only the imports changed.

    - "Run the server": the whole script, with twistbridge.bgpy's Client and
      with bgpy's real Client;
    - "Define tasks": the three tasks as a user's module (a package,
      bgpy_example/tasks.py), sent by bgpy's real Client in its INIT, or
      loaded with --init-file.
"""

import ast
import os
import re
import subprocess
import sys
import textwrap

import bgpy
import pytest

from twistbridge.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def readme_blocks():
    with open(os.path.join(HERE, "bgpy_README.rst"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"\.\. code-block:: python\n\s*\n((?:(?: {4}.*)?\n)+)", text)
    return [textwrap.dedent(b) for b in blocks]


def run_the_server_block():
    (block,) = [b for b in readme_blocks() if "server.run_background()" in b]
    return block


def define_tasks_blocks():
    return [b for b in readme_blocks() if b.lstrip().startswith("def ")]


def test_the_readme_has_the_examples_this_file_runs():
    assert len(define_tasks_blocks()) == 3
    assert "client.terminate(await_response=True)" in run_the_server_block()


def with_imports(block, replacements, port):
    for old, new in replacements:
        assert old in block
        block = block.replace(old, new)
    # (bgpy's fixed port 54321, taken perhaps: a free one)
    assert "PORT = 54321" in block
    return block.replace("PORT = 54321", f"PORT = {port}")


def run_script(source, tmp_path, env=None):
    script = tmp_path / "readme_example.py"
    # (to a file: the background server the example starts writes its log
    # to the same stdout, and a line of it can land inside a printed one)
    script.write_text(
        source + "\nopen('response.txt', 'w').write(repr(response))\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return ast.literal_eval((tmp_path / "response.txt").read_text())


EXIT_STATE = {"request_count": 3, "value": 910, "status": "Exited."}


@pytest.mark.parametrize(
    "imports",
    [
        # the one import changed: Client and Server from twistbridge.bgpy
        [
            (
                "from bgpy import Client, Server",
                "from twistbridge.bgpy import Client, Server",
            ),
            (
                "from bgpy import token_create",
                "from twistbridge.bgpy import token_create",
            ),
        ],
        # twistbridge's Server, bgpy's real Client
        [
            (
                "from bgpy import Client, Server",
                "from bgpy import Client\nfrom twistbridge.bgpy import Server",
            ),
            (
                "from bgpy import token_create",
                "from twistbridge.bgpy import token_create",
            ),
        ],
    ],
    ids=["twistbridge-client", "bgpy-client"],
)
def test_run_the_server(imports, tmp_path):
    source = with_imports(run_the_server_block(), imports, free_port())
    response = run_script(source, tmp_path)
    # The server's second response carries bgpy's flag, as bgpy's own does.
    assert response == {**EXIT_STATE, "await_response": False}


def write_user_tasks(root):
    """The README's three tasks as the module bgpy_example.tasks."""
    package = root / "bgpy_example"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    header = (
        "from twistbridge.bgpy import respond\n"
        "from twistbridge.bgpy.core.sockets import ClientSocket\n\n\n"
    )
    body = "\n\n".join(define_tasks_blocks())
    (package / "tasks.py").write_text(header + body, encoding="utf-8")
    return package / "tasks.py"


def user_script(port, token_line="TOKEN = None"):
    return textwrap.dedent(
        f"""
        from bgpy import Client
        from bgpy_example.tasks import init_task, exec_task, exit_task

        {token_line}
        client = Client(host="127.0.0.1", port={port}, token=TOKEN, log_level="CRITICAL")
        first = client.initialize(init_task, exec_task, exit_task)
        print("INIT", repr(first))
        if first["message"] == "Initialization successful.":
            client.execute({{"command": "increase", "value_change": 10}})
            client.execute({{"command": "decrease", "value_change": 100}})
            print("EXIT", repr(client.terminate(await_response=True)))
        """
    )


def run_user(tmp_path, source):
    script = tmp_path / "client.py"
    script.write_text(source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("INIT", "EXIT"):
            out[key] = ast.literal_eval(value)
    return out


def test_user_tasks_without_token_are_refused_saying_how_to_allow_them(
    tmp_path, bgpy_server
):
    write_user_tasks(tmp_path)
    port = bgpy_server(path=tmp_path).port
    out = run_user(tmp_path, user_script(port))
    assert out == {
        "INIT": {
            "message": "Refused: 'bgpy_example.tasks.init_task' is not allowed: "
            "start the server with --allow-module bgpy_example.tasks, or set a "
            "token (--token / BGPY_TOKEN) and authenticate.",
            "await_response": False,
        }
    }


@pytest.mark.parametrize(
    "args, token",
    [
        (["--allow-module", "bgpy_example.tasks"], None),
        ([], "a-token-for-the-readme"),
    ],
    ids=["allow-module", "token"],
)
def test_user_tasks_sent_in_init(tmp_path, bgpy_server, args, token):
    write_user_tasks(tmp_path)
    server = bgpy_server(*args, token=token, path=tmp_path)
    port = server.port
    out = run_user(tmp_path, user_script(port, f"TOKEN = {token!r}"))
    assert out["INIT"] == {
        "message": "Initialization successful.",
        "await_response": False,
    }
    assert out["EXIT"] == {**EXIT_STATE, "await_response": False}
    assert server.wait(20) == 0


def test_user_tasks_from_init_file(tmp_path, bgpy_server):
    path = write_user_tasks(tmp_path)
    server = bgpy_server("--init-file", str(path), path=tmp_path)
    port = server.port
    out = run_user(tmp_path, user_script(port))
    # Known under its package path: INIT is only "Already initialized."
    assert out == {"INIT": {"message": "Already initialized.", "await_response": False}}
    client = bgpy.Client("127.0.0.1", port, log_level="CRITICAL")
    client.execute({"command": "increase", "value_change": 10})
    assert client.terminate(await_response=True) == {
        "request_count": 2,
        "value": 1010,
        "status": "Exited.",
        "await_response": False,
    }
    assert server.wait(20) == 0
