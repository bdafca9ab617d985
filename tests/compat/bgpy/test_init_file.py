"""
Init files as bgpy loads them: under the names clients use for their module
(the package path and the bare file name), with relative imports: inside a
package, and, outside one, bgpy's own example file copied as it is
(`from ..server import respond` finds twistbridge.bgpy.server).
"""

import importlib.resources
import sys

import bgpy
import pytest

OK_EXEC = {"message": "Received 'EXEC'"}
ALREADY = {"message": "Already initialized.", "await_response": False}


def real(server):
    return bgpy.Client("127.0.0.1", server.port, log_level="CRITICAL")


@pytest.fixture
def package(tmp_path, monkeypatch):
    """tmp/shop/{__init__,prices,tasks}.py; tasks imports .prices."""
    pkg = tmp_path / "shop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prices.py").write_text("START = 1000\n")
    (pkg / "tasks.py").write_text(
        "from twistbridge.bgpy import respond\n"
        "from .prices import START\n\n\n"
        "def init_task():\n"
        "    return {'value': START}\n\n\n"
        "def exec_task(client, state, exec_args):\n"
        "    state['value'] += exec_args['add']\n"
        "    return state\n\n\n"
        "def exit_task(client, state, exit_args):\n"
        "    respond(client, state)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(pkg))
    yield pkg
    for name in ("shop", "shop.tasks", "shop.prices", "shop.plain", "plain"):
        sys.modules.pop(name, None)


def test_package_init_file_with_a_relative_import(package, bgpy_server, tmp_path):
    import shop.tasks

    server = bgpy_server("--init-file", str(package / "tasks.py"), path=tmp_path)
    module = shop.tasks
    assert (
        real(server).initialize(module.init_task, module.exec_task, module.exit_task)
        == ALREADY
    )
    assert real(server).execute({"add": 5}) == OK_EXEC
    assert real(server).terminate(await_response=True) == {
        "value": 1005,
        "await_response": False,
    }
    assert server.wait() == 0


def test_package_init_file_under_its_bare_name_too(package, bgpy_server, tmp_path):
    text = (package / "tasks.py").read_text()
    (package / "plain.py").write_text(text.replace("from .prices", "from shop.prices"))
    import plain  # as a client started in the package's directory names it
    import shop.plain

    server = bgpy_server("--init-file", str(package / "plain.py"), path=tmp_path)
    for module in (shop.plain, plain):
        assert (
            real(server).initialize(
                module.init_task, module.exec_task, module.exit_task
            )
            == ALREADY
        )
    assert real(server).execute({"add": 2}) == OK_EXEC
    assert real(server).terminate(await_response=True) == {
        "value": 1002,
        "await_response": False,
    }


def test_init_file_wins_before_any_module_check(package, bgpy_server, tmp_path):
    # A module nobody allowed: still "Already initialized.", nothing refused.
    from bgpy.example import tasks

    server = bgpy_server("--init-file", str(package / "tasks.py"), path=tmp_path)
    assert (
        real(server).initialize(tasks.init_task, tasks.exec_task, tasks.exit_task)
        == ALREADY
    )
    assert real(server).execute({"add": 1}) == OK_EXEC


def test_bgpy_example_copied_outside_a_package(bgpy_server, tmp_path):
    original = importlib.resources.files("bgpy.example") / "tasks.py"
    text = original.read_text()
    assert "from ..server import respond" in text
    copy = tmp_path / "tasks.py"
    copy.write_text(text)
    server = bgpy_server("--init-file", str(copy), path=tmp_path)
    assert real(server).execute({"command": "increase", "value_change": 10}) == OK_EXEC
    # exit_task answers through twistbridge.bgpy.server.respond
    assert real(server).terminate(await_response=True) == {
        "request_count": 2,
        "value": 1010,
        "status": "Exited.",
        "await_response": False,
    }
    assert server.wait() == 0


def test_an_unusable_init_file_is_one_line(run_cli, apps_env, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from . import nothing_there\n")
    result = run_cli(
        "server", "127.0.0.1", "0", "--init-file", str(broken), env=apps_env()
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"bgpy: cannot load tasks from {broken}: ")
    assert result.stderr.count("\n") == 1
