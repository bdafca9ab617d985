"""docs/deployment.rst states every setting with its real default."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from twistbridge.config import SIZE_SETTINGS, Settings, parse_size
from twistbridge.tap import Options

DOC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "deployment.rst",
)

# Defaults that are words rather than values.
WORDS = {
    "app": "the demo app",
    "processes": "number of cores",
    "igor_allowed_origin": "the localhost origins",
    "bgpy_token_file": "``$BGPY_TOKEN``",
    "reload": "off",
}


def settings_table() -> dict:
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    section = text.split("\nSettings\n--------\n", 1)[1].split(
        "\nGraceful shutdown\n", 1
    )[0]
    rows = re.findall(r"^\s+\* - ``(--[\w-]+)``\n\s+- (.+)$", section, re.M)
    return {option: default.strip() for option, default in rows}


def test_every_setting_is_documented_with_its_default():
    table = settings_table()
    options = {f"--{o[0]}" for o in [*Options.optParameters, *Options.optFlags]} | {
        "--igor-allowed-origin",
        "--bgpy-allow-module",
        "--allowed-host",
    }
    assert set(table) == options
    defaults = Settings()
    for option, shown in table.items():
        name = option[2:].replace("-", "_")
        if name in WORDS:
            assert shown == WORDS[name], option
            continue
        value = getattr(defaults, name)
        plain = shown.replace("``", "")
        if name in SIZE_SETTINGS:
            assert parse_size(plain) == value, option
        elif value is None or value == ():
            assert plain == "none", option
        elif isinstance(value, str):
            assert plain == value, option
        else:
            assert float(plain) == float(value), option


# -- the Debian 12 walkthrough: the app, its state directory, the token -------

ROOT = os.path.dirname(os.path.dirname(DOC))


def walkthrough_block(first_line: str) -> list:
    """The commands of the walkthrough's shell block that starts with C{first_line}."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    start = text.index("       " + first_line)
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("       "):
            break
        lines.append(line.strip())
    return lines


def test_walkthrough_app_and_token_as_written(tmp_path):
    import subprocess

    import requests

    from twistbridge.testing import BridgeProcess, JsonLinesClient

    root = tmp_path / "root"
    root.mkdir()
    example = os.path.join(ROOT, "docs", "examples", "deploy_app.py")
    subprocess.run(["cp", example, str(tmp_path / "myapp.py")], check=True)
    # Steps 2 and 4 as written, with / moved into a scratch directory.
    for command in walkthrough_block(
        "install -d /opt/twistbridge/app"
    ) + walkthrough_block("install -d -m 0700 /etc/twistbridge"):
        command = re.sub(
            r"(?<=[ >])/(opt|etc)/", lambda m: f"{root}/{m.group(1)}/", command
        )
        subprocess.run(["bash", "-c", command], check=True, cwd=str(tmp_path))
    token_file = root / "etc" / "twistbridge" / "bgpy-token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert oct((root / "etc" / "twistbridge").stat().st_mode & 0o777) == "0o700"
    token = token_file.read_text().strip()
    assert len(token) == 43
    state = tmp_path / "state"
    state.mkdir()
    env = dict(os.environ, STATE_DIRECTORY=str(state))
    with BridgeProcess(
        ["--app", "myapp:bridge", "--bgpy-token-file", str(token_file)],
        env=env,
        cwd=str(root / "opt" / "twistbridge" / "app"),
    ) as server:
        assert f"deploy_app: uploads are saved in {state}/uploads" in server.output
        answer = requests.post(
            server.url("/"), files={"file": ("../../report.txt", b"data")}, timeout=10
        )
        assert answer.json() == {"saved": ["report.txt"]}
        assert (state / "uploads" / "report.txt").read_bytes() == b"data"
        client = JsonLinesClient(server.addresses["bgpy"])
        try:
            assert client.call("AUTH", token="wrong")["type"] == "OK"  # the ack
            assert client.line()["type"] == "ERROR"
        finally:
            client.close()
        client = JsonLinesClient(server.addresses["bgpy"])
        try:
            assert client.call("AUTH", token=token)["type"] == "OK"
            assert client.line()["type"] == "OK"
        finally:
            client.close()


def shell_block(after: str) -> str:
    """The shell block after the text C{after}, its continuation lines joined."""
    with open(DOC, encoding="utf-8") as f:
        rest = f.read().split(after, 1)[1].split(".. code-block:: shell", 1)[1]
    lines = []
    for line in rest.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            break
        lines.append(line.strip())
    return "\n".join(lines).strip().replace("\\\n", "")


@pytest.fixture
def open_tmp_path():
    """A scratch directory that every user may traverse (pytest's may not)."""
    path = tempfile.mkdtemp(prefix="twistbridge-daemon-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_daemon_command_as_written(open_tmp_path):
    import grp
    import pwd
    import signal
    import subprocess

    tmp_path = open_tmp_path

    import requests

    from twistbridge.testing import wait_for

    command = shell_block("\nDaemon:\n")
    assert command.startswith("twistd --pidfile /run/twistbridge/bridge.pid")
    root = tmp_path / "root"
    run, logs, state = (
        root / "run" / "twistbridge",
        root / "var" / "log" / "twistbridge",
        tmp_path / "state",
    )
    for directory in (run, logs, state):
        directory.mkdir(parents=True)
    # The page's service account: nobody/nogroup when we may switch to
    # them (root), else ourselves; the pidfile's directory is its own.
    if os.geteuid() == 0:
        user, group = "nobody", "nogroup"
        for directory in (run, logs, state):
            os.chown(directory, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    else:
        user, group = (
            pwd.getpwuid(os.getuid()).pw_name,
            grp.getgrgid(os.getgid()).gr_name,
        )
    command = command.replace("-u bridge -g bridge", f"-u {user} -g {group}")
    command = re.sub(r"(?<= )/(run|var)/", lambda m: f"{root}/{m.group(1)}/", command)
    subprocess.run(
        [
            "cp",
            os.path.join(ROOT, "docs", "examples", "deploy_app.py"),
            str(tmp_path / "myapp.py"),
        ],
        check=True,
    )
    env = dict(os.environ, STATE_DIRECTORY=str(state))
    env["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), env.get("PATH", "")]
    )
    started = subprocess.run(
        ["bash", "-c", command + " --port 0 --igor-port 0 --bgpy-port 0"],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env=env,
        timeout=60,
    )
    # The parent returns once the daemon is up.
    assert started.returncode == 0, started.stderr
    pidfile, logfile = run / "bridge.pid", logs / "bridge.log"
    pid = int(pidfile.read_text().strip())
    try:
        log = wait_for(
            lambda: "bgpy listening on" in (t := logfile.read_text()) and t,
            15,
            what="the log",
        )
        address = re.search(r"http listening on (\S+)", log).group(1)
        assert (
            requests.get(f"http://{address}/health", timeout=10).json()["status"]
            == "ok"
        )
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f)
        assert status["Umask"].strip() == "0027"
        assert int(status["Uid"].split()[0]) == pwd.getpwnam(user).pw_uid
        # What the page says stops it, with its path moved as above.
        stop = re.sub(
            r"/run/", f"{root}/run/", "kill -TERM $(cat /run/twistbridge/bridge.pid)"
        )
        assert (
            "kill -TERM $(cat\n/run/twistbridge/bridge.pid)"
            in open(DOC, encoding="utf-8").read()
        )
        subprocess.run(["bash", "-c", stop], check=True, timeout=10)
        wait_for(
            lambda: not os.path.exists(f"/proc/{pid}"), 20, what="the daemon to exit"
        )
        assert not pidfile.exists(), logfile.read_text()
        assert "shutdown complete" in logfile.read_text()
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
