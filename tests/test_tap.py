"""`twistd bridge` as users start it: options, --app, and every bad-input case."""

import json
import pathlib
import socket
import subprocess
import urllib.request

import pytest

from twistbridge.testing import BridgeProcess, twistd_path


def run_twistd(*args, env=None, timeout=30):
    return subprocess.run(
        [twistd_path(), "-n", "bridge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("twistd bridge: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_health_on_ephemeral_port():
    with BridgeProcess() as server:
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


def test_app_option_serves_the_app(apps_env):
    with BridgeProcess(["--app", "hello_app:bridge"], env=apps_env) as server:
        request = urllib.request.Request(
            server.url("/rpc"),
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


def test_bad_endpoint_description():
    result = run_twistd("--port", "nosuchtype:1234")
    assert_one_line_error(
        result, "--port", "nosuchtype:1234", "not an endpoint description"
    )


def test_port_in_use_names_the_port():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = run_twistd("--port", "0", "--igor-port", str(port), "--bgpy-port", "0")
    finally:
        taken.close()
    assert_one_line_error(
        result,
        f"--igor-port: port {port} on 127.0.0.1 is already in use; choose another "
        "with --igor-port PORT, or switch it off with --igor-port none "
        "(with make run: make run ARGS='--igor-port ...')",
    )


@pytest.mark.usefixtures("ipv6_loopback")
def test_ipv6_port_in_use_names_the_port():
    taken = socket.socket(socket.AF_INET6)
    taken.bind(("::1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = run_twistd("--port", f"tcp:{port}:interface=\\:\\:1")
    finally:
        taken.close()
    assert_one_line_error(
        result,
        f"--port: port {port} on ::1 is already in use; choose another "
        "with --port PORT (with make run: make run ARGS='--port ...')",
    )


@pytest.mark.parametrize("port", ["99999", "65536"])
def test_port_out_of_range(port):
    result = run_twistd("--port", port)
    assert_one_line_error(
        result, f"--port {port}: a port number is 0-65535 (0: any free port)"
    )


@pytest.mark.parametrize(
    "spec, fragments",
    [
        (
            "no_such_module_xyz:bridge",
            [
                "no module 'no_such_module_xyz' in the current directory (",
                "or on the Python path; run twistd from the directory that holds it, "
                "or add that directory to PYTHONPATH",
            ],
        ),
        (
            "quickstart_app.py",
            [
                "--app quickstart_app.py: name the module, not its file: --app quickstart_app:bridge"
            ],
        ),
        (
            "quickstart_app.py:bridge",
            ["name the module, not its file: --app quickstart_app:bridge"],
        ),
        ("hello_app:missing", ["has no attribute 'missing'"]),
        (
            "hello_app:not_a_bridge",
            ["'not_a_bridge' is a object, not a twistbridge.Bridge"],
        ),
        ("broken_app:bridge", ["raised RuntimeError", "broken on purpose"]),
        (
            "hello_app",
            [
                "must be module:attribute (the module, then the name of its Bridge), e.g. --app hello_app:bridge; got 'hello_app'"
            ],
        ),
    ],
)
def test_bad_app(apps_env, spec, fragments):
    result = run_twistd("--app", spec, "--port", "0", env=apps_env)
    assert_one_line_error(result, *fragments)


def test_bad_size():
    result = run_twistd("--max-upload-size", "lots", "--port", "0")
    assert_one_line_error(result, "--max-upload-size", "not a size")


def test_unknown_option_is_a_usage_error():
    result = run_twistd("--no-such-option")
    assert_one_line_error(
        result, "option --no-such-option not recognized (see: twistd bridge --help)"
    )


def test_listeners_of_unregistered_protocols_stay_closed(apps_env):
    """hello_app registers only JSON-RPC: the Igor and bgpy ports stay closed."""
    with BridgeProcess(
        ["--app", "hello_app:bridge"], env=apps_env, closed=("igor", "bgpy")
    ) as server:
        with urllib.request.urlopen(server.url("/health"), timeout=5) as response:
            body = json.load(response)
        assert set(body["services"]) == {"http"}
        assert set(server.addresses) == {"http"}
        assert (
            "igor listener left closed: the app registers no Igor action or "
            "process (give --igor-port to open it anyway)" in server.output
        )
        assert (
            "bgpy listener left closed: the app registers no bgpy tasks, allowed "
            "modules or token (give --bgpy-port to open it anyway)" in server.output
        )


def test_explicit_port_opens_the_listener(apps_env):
    with BridgeProcess(
        ["--app", "hello_app:bridge"], env=apps_env, closed=("bgpy",)
    ) as server:
        assert set(server.addresses) == {"http", "igor"}


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "the file is empty (it must hold the token)"),
        (b"  \n\n", "the file is empty (it must hold the token)"),
        (b"\xff\xfe\x00", "not UTF-8 text"),
        (None, "No such file or directory"),
    ],
)
def test_unusable_bgpy_token_file_is_a_start_up_error(tmp_path, content, reason):
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    result = run_twistd("--port", "0", "--bgpy-token-file", str(path))
    assert_one_line_error(result, f"--bgpy-token-file {path}: {reason}")
    assert result.stderr.strip() == (
        f"twistd bridge: error: --bgpy-token-file {path}: {reason}"
    )
    if content == b"":  # the example of docs/security.rst
        example = f"twistd bridge: error: --bgpy-token-file /etc/app/token: {reason}"
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
