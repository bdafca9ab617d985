"""
The command line `python -m twistbridge.bgpy` against bgpy's: every command
(server, terminate, version) with bgpy's arguments, and a port that cannot
be bound.
"""

import importlib.metadata
import os
import socket

import bgpy

from twistbridge.bgpy.__main__ import parser
from twistbridge.bgpy._pickle import TaskPolicy


def test_version(run_cli):
    result = run_cli("version")
    assert result.returncode == 0
    version = importlib.metadata.version("twistbridge")
    assert result.stdout == f"twistbridge.bgpy {version}\n"


def test_every_command_and_option_of_bgpy():
    # bgpy's: server HOST PORT -t/--token -l/--log-level -f/--log-file
    # -i/--init-file; terminate HOST PORT -t -l -f; version.
    p = parser()
    args = p.parse_args(
        ["server", "h", "1", "-t", "-l", "DEBUG", "-f", "x.log", "-i", "tasks.py"]
    )
    assert (args.host, args.port, args.token, args.log_level) == ("h", 1, True, "DEBUG")
    assert (args.log_file, args.init_file) == ("x.log", "tasks.py")
    args = p.parse_args(
        [
            "server",
            "h",
            "1",
            "--token",
            "--log-level=INFO",
            "--log-file=None",
            "--init-file=None",
        ]
    )
    assert (args.log_file, args.init_file) == ("None", "None")
    args = p.parse_args(
        ["terminate", "h", "2", "--token", "--log-level", "INFO", "--log-file", "y.log"]
    )
    assert (args.command, args.port, args.token, args.log_file) == (
        "terminate",
        2,
        True,
        "y.log",
    )
    assert p.parse_args(["version"]).command == "version"


def test_a_port_that_is_taken_is_one_line_and_a_failure(run_cli, apps_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("server", "127.0.0.1", str(port), env=apps_env())
    assert result.returncode == 1
    assert result.stderr == (
        f"bgpy server: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


def test_an_address_that_is_not_ours(run_cli, apps_env):
    result = run_cli("server", "192.0.2.1", "54321", env=apps_env())
    assert result.returncode == 1
    assert result.stderr == (
        "bgpy server: cannot listen on 192.0.2.1:54321: cannot assign requested "
        "address\n"
    )


def test_terminate_from_the_command_line(bgpy_server, run_cli, apps_env):
    server = bgpy_server("--allow-module", "bgpy.example.tasks")
    from bgpy.example import tasks

    real = bgpy.Client("127.0.0.1", server.port, log_level="CRITICAL")
    assert real.initialize(tasks.init_task, tasks.exec_task, tasks.exit_task) == {
        "message": "Initialization successful.",
        "await_response": False,
    }
    result = run_cli("terminate", "127.0.0.1", str(server.port), env=apps_env())
    assert result.returncode == 0, result.stderr
    assert server.wait() == 0


DOCS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "docs")


def read_doc(*parts):
    with open(os.path.join(DOCS, *parts), encoding="utf-8") as f:
        return " ".join(f.read().split())


def test_the_migration_guide_shows_what_version_prints(run_cli):
    printed = run_cli("version").stdout.strip()
    assert f"$ python -m twistbridge.bgpy version {printed}" in read_doc(
        "migrating", "bgpy.rst"
    )


def test_the_docs_quote_the_refusals_as_they_are():
    bridge = TaskPolicy()
    assert f"Refused: {bridge.refusal('bgpy_example.tasks', 'init_task')}." in (
        read_doc("security.rst")
    )
    standalone = TaskPolicy(
        allow_option="--allow-module", token_option="--token / BGPY_TOKEN"
    )
    quoted = f"``Refused: {standalone.refusal('bgpy_example.tasks', 'init_task')}.``"
    assert quoted in read_doc("migrating", "bgpy.rst")
