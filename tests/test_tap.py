"""
`twistd bridge` as users start it: options, --app, and every bad-input case.

A start-up error is one line on stderr and exit status 1.  Each case is
checked in this process, through the plugin's L{Options} (what twistd
calls, and where every refusal is raised); one case of each kind (the
usage, a setting's value, the app, a listener, the token file) also runs
the real `twistd`, for the line and the exit status users see.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import urllib.request

import pytest

import twistbridge
from twistbridge.tap import Options
from twistbridge.testing import BridgeProcess, twistd_path

from .conftest import APPS, apps_environ

PREFIX = "twistd bridge: error: "
#: Modules an in-process start-up imports that must not outlive the test:
#: the test apps, and the demo app (its Bridge is configured by the options).
FRESH_MODULES = ("twistbridge.demo", "hello_app", "broken_app", "quickstart_app")


def run_twistd(*args, env=None, timeout=30):
    return subprocess.run(
        [twistd_path(), "-n", "bridge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def start_up_error(monkeypatch, apps_env):
    """
    C{start_up_error(args, twistd=False)}: the one line C{twistd bridge
    ARGS} fails with (the test apps on the Python path).  In this process
    unless C{twistd}: L{Options} must raise L{SystemExit} with that line;
    with C{twistd}, the real one must exit 1 with that line alone on stderr
    and no traceback.
    """
    monkeypatch.syspath_prepend(APPS)  # (and sys.path is restored after)
    saved = {
        name: sys.modules.pop(name) for name in FRESH_MODULES if name in sys.modules
    }
    had_demo = hasattr(twistbridge, "demo")
    demo_attribute = getattr(twistbridge, "demo", None)

    def fail(args, twistd=False):
        if twistd:
            result = run_twistd(*args, env=apps_env)
            assert result.returncode == 1, result
            assert "Traceback" not in result.stderr + result.stdout
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            return lines[0]
        with pytest.raises(SystemExit) as raised:
            Options().parseOptions(list(args))
        message = raised.value.code
        assert isinstance(message, str), message  # printed, and exit status 1
        assert len(message.splitlines()) == 1, message
        return message

    yield fail
    for name in FRESH_MODULES:
        sys.modules.pop(name, None)
    sys.modules.update(saved)
    if had_demo:
        twistbridge.demo = demo_attribute
    elif hasattr(twistbridge, "demo"):
        del twistbridge.demo


def assert_one_line_error(line, *fragments):
    assert line.startswith(PREFIX), line
    for fragment in fragments:
        assert fragment in line, line


def test_health_on_ephemeral_port(demo_server):
    """The demo app with no options: every listener on an ephemeral port."""
    server = demo_server
    with urllib.request.urlopen(server.url("/health"), timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        body = json.load(response)
    assert body["status"] == "ok"
    assert set(body["services"]) == {"http", "igor", "bgpy"}
    for name, status in body["services"].items():
        assert status["up"] is True
        assert status["address"] == server.addresses[name]
        assert status["address"].startswith("127.0.0.1:")


def test_none_switches_listeners_off():
    with BridgeProcess(["--igor-port", "none", "--bgpy-port", "none"]) as server:
        with urllib.request.urlopen(server.url("/health"), timeout=5) as response:
            body = json.load(response)
        assert set(body["services"]) == {"http"}


@pytest.fixture(scope="module")
def hello_server():
    """hello_app (JSON-RPC only) given --port alone."""
    env = apps_environ()
    with BridgeProcess(
        ["--app", "hello_app:bridge"], env=env, closed=("igor", "bgpy")
    ) as server:
        yield server


@pytest.mark.one_worker
def test_app_option_serves_the_app(hello_server):
    request = urllib.request.Request(
        hello_server.url("/rpc"),
        data=json.dumps(
            {"jsonrpc": "2.0", "method": "hello", "params": ["you"], "id": 1}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response) == {
            "jsonrpc": "2.0",
            "result": "hello you",
            "id": 1,
        }


IGOR_LEFT_CLOSED = (
    "igor listener left closed: the app registers no Igor action or "
    "process (give --igor-port to open it anyway)"
)
BGPY_LEFT_CLOSED = (
    "bgpy listener left closed: the app registers no bgpy tasks, allowed "
    "modules or token (give --bgpy-port to open it anyway)"
)


@pytest.mark.one_worker
def test_listeners_of_unregistered_protocols_stay_closed(hello_server):
    """hello_app registers only JSON-RPC: the Igor and bgpy ports stay closed."""
    with urllib.request.urlopen(hello_server.url("/health"), timeout=5) as response:
        body = json.load(response)
    assert set(body["services"]) == {"http"}
    assert set(hello_server.addresses) == {"http"}
    assert IGOR_LEFT_CLOSED in hello_server.output
    assert BGPY_LEFT_CLOSED in hello_server.output


def test_explicit_port_opens_the_listener(apps_env):
    with BridgeProcess(
        ["--app", "hello_app:bridge"], env=apps_env, closed=("bgpy",)
    ) as server:
        assert set(server.addresses) == {"http", "igor"}
        assert IGOR_LEFT_CLOSED not in server.output
        assert BGPY_LEFT_CLOSED in server.output


def test_bad_endpoint_description(start_up_error):
    assert start_up_error(["--port", "nosuchtype:1234"]) == (
        f"{PREFIX}--port nosuchtype:1234: not an endpoint description "
        "(Unknown endpoint type: 'nosuchtype')"
    )


@pytest.fixture
def taken():
    """C{taken(family, host)}: the port of a socket listening there, for the test."""
    sockets = []

    def listen(family=socket.AF_INET, host="127.0.0.1"):
        s = socket.socket(family)
        sockets.append(s)
        s.bind((host, 0))
        s.listen(1)
        return s.getsockname()[1]

    yield listen
    for s in sockets:
        s.close()


@pytest.mark.parametrize("twistd", [False, True], ids=["options", "twistd"])
def test_port_in_use_names_the_port(start_up_error, taken, twistd):
    port = taken()
    args = ["--port", "0", "--igor-port", str(port), "--bgpy-port", "0"]
    assert start_up_error(args, twistd) == (
        f"{PREFIX}--igor-port: port {port} on 127.0.0.1 is already in use; "
        "choose another with --igor-port PORT, or switch it off with "
        "--igor-port none (with make run: make run ARGS='--igor-port ...')"
    )


@pytest.mark.usefixtures("ipv6_loopback")
def test_ipv6_port_in_use_names_the_port(start_up_error, taken):
    port = taken(socket.AF_INET6, "::1")
    assert start_up_error(["--port", f"tcp:{port}:interface=\\:\\:1"]) == (
        f"{PREFIX}--port: port {port} on ::1 is already in use; choose another "
        "with --port PORT (with make run: make run ARGS='--port ...')"
    )


@pytest.mark.parametrize("port", ["99999", "65536"])
def test_port_out_of_range(start_up_error, port):
    assert start_up_error(["--port", port]) == (
        f"{PREFIX}--port {port}: a port number is 0-65535 (0: any free port)"
    )


@pytest.mark.parametrize(
    "spec, fragments, twistd",
    [
        (
            "no_such_module_xyz:bridge",
            [
                "--app no_such_module_xyz:bridge: no module 'no_such_module_xyz' "
                f"in the current directory ({os.getcwd()}) "
                "or on the Python path; run twistd from the directory that holds it, "
                "or add that directory to PYTHONPATH",
            ],
            False,
        ),
        (
            "quickstart_app.py",
            [
                "--app quickstart_app.py: name the module, not its file: --app quickstart_app:bridge"
            ],
            False,
        ),
        (
            "quickstart_app.py:bridge",
            ["name the module, not its file: --app quickstart_app:bridge"],
            False,
        ),
        (
            "hello_app:missing",
            ["--app hello_app:missing: module 'hello_app' has no attribute 'missing'"],
            False,
        ),
        (
            "hello_app:not_a_bridge",
            ["'not_a_bridge' is a object, not a twistbridge.Bridge"],
            False,
        ),
        (
            "broken_app:bridge",
            [
                "--app broken_app:bridge: importing 'broken_app' raised "
                "RuntimeError: this module is broken on purpose"
            ],
            True,
        ),
        (
            "hello_app",
            [
                "must be module:attribute (the module, then the name of its Bridge), e.g. --app hello_app:bridge; got 'hello_app'"
            ],
            False,
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_app(start_up_error, spec, fragments, twistd):
    line = start_up_error(["--app", spec, "--port", "0"], twistd)
    assert_one_line_error(line, *fragments)


def test_bad_size(start_up_error):
    line = start_up_error(["--max-upload-size", "lots", "--port", "0"], twistd=True)
    assert_one_line_error(line, "--max-upload-size", "not a size")


@pytest.mark.parametrize("twistd", [False, True], ids=["options", "twistd"])
def test_unknown_option_is_a_usage_error(start_up_error, twistd):
    assert start_up_error(["--no-such-option"], twistd) == (
        f"{PREFIX}option --no-such-option not recognized (see: twistd bridge --help)"
    )


@pytest.mark.parametrize(
    "content, reason, twistd",
    [
        (b"", "the file is empty (it must hold the token)", True),
        (b"  \n\n", "the file is empty (it must hold the token)", False),
        (b"\xff\xfe\x00", "not UTF-8 text", False),
        (None, "No such file or directory", False),
    ],
    ids=["empty", "blank", "not-utf-8", "missing"],
)
def test_unusable_bgpy_token_file_is_a_start_up_error(
    start_up_error, tmp_path, content, reason, twistd
):
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    args = ["--port", "0", "--bgpy-token-file", str(path)]
    assert start_up_error(args, twistd) == (
        f"{PREFIX}--bgpy-token-file {path}: {reason}"
    )
    if content == b"":  # the example of docs/security.rst
        example = f"{PREFIX}--bgpy-token-file /etc/app/token: {reason}"
        security = pathlib.Path(__file__).parents[1] / "docs" / "security.rst"
        text = " ".join(security.read_text("utf-8").split())
        assert f"``{example}``" in text


def test_unusable_bgpy_token_file_in_code_is_one_line_too(tmp_path):
    from twistbridge import Bridge

    path = tmp_path / "token"
    path.write_text("")
    bridge = Bridge(
        port="none", igor_port="none", bgpy_port="0", bgpy_token_file=str(path)
    )
    with pytest.raises(SystemExit) as raised:
        bridge.service()
    assert str(raised.value) == (
        "bgpy: cannot read the token file: the file is empty (it must hold the token)"
    )
