"""
Igor's file server (``file_server_config``) on twistbridge: files from the
root over HTTP, nothing outside it, read-only, loopback, browser origins as
for the WebSocket; and the one-line exit when a port is taken.
"""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import requests

from twistbridge.igor import IgorServer
from twistbridge.testing import free_port, wait_for

pytestmark = pytest.mark.one_worker

PROGRAM = textwrap.dedent(
    """
    import sys
    from twistbridge.igor import IgorServer

    def echo(out, data, **kwargs):
        out.send(data)

    config = {{
        "port": {ws_port},
        "file_server_config": {{"enable": True, "port": {port}, "root_directory": {root!r}}},
    }}
    IgorServer(api={{"echo": echo}}, config=config).run_forever()
    """
)


def raw_get(port, path, method=b"GET", headers=b"Host: localhost\r\n", body=b""):
    """Send one request with exactly this path; return (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(method + b" " + path + b" HTTP/1.0\r\n" + headers + b"\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, body


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("files")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello from igor\n")
    (root / "sub" / "a.txt").write_bytes(b"a\n")
    (base / "secret.txt").write_bytes(b"SECRET\n")
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_bytes(b"SECRET\n")
    os.symlink(base / "outside", root / "link")
    os.symlink(base / "secret.txt", root / "link.txt")
    return base


@pytest.fixture(scope="module")
def server(tree):
    port, ws_port = free_port(), free_port()
    root = str(tree / "root")
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM.format(port=port, ws_port=ws_port, root=root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def ready():
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode())
        return listening(port) and listening(ws_port)

    wait_for(ready, 30, what="the Igor file server")
    yield port, root
    process.terminate()
    process.wait(10)


def test_serves_a_file_by_relative_and_by_absolute_path(server):
    port, root = server
    assert raw_get(port, b"/hello.txt")[::2] == (200, b"hello from igor\n")
    absolute = (root + "/hello.txt").encode()
    assert raw_get(port, absolute)[::2] == (200, b"hello from igor\n")
    response = requests.get(f"http://localhost:{port}/sub/a.txt", timeout=10)
    assert (response.status_code, response.content) == (200, b"a\n")


@pytest.mark.parametrize(
    "path",
    [
        b"/../secret.txt",
        b"/sub/../../secret.txt",
        b"/%2e%2e/secret.txt",
        b"/%2E%2E/%2e%2e/secret.txt",
        b"/sub/..%2f..%2fsecret.txt",
        b"/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
        b"/..\\secret.txt",
        b"//etc/passwd",
        b"/etc/passwd",
        b"/link/secret.txt",
        b"/link.txt",
        b"/link/",
    ],
)
def test_nothing_outside_the_root(server, path):
    port, _ = server
    status, _, body = raw_get(port, path)
    assert status == 404
    assert b"SECRET" not in body and b"root:" not in body


def test_absolute_path_outside_the_root(server, tree):
    port, _ = server
    status, _, body = raw_get(port, str(tree / "secret.txt").encode())
    assert (status, body) == (404, b"Not found\n")


def test_nul_byte(server):
    port, _ = server
    status, _, body = raw_get(port, b"/hello.txt%00.png")
    assert (status, body) == (400, b"Bad path: it contains a NUL byte\n")


def test_directory_listing_as_igor(server):
    port, _ = server
    status, fields, _ = raw_get(port, b"/sub")
    assert (status, fields[b"location"]) == (301, b"/sub/")
    status, _, body = raw_get(port, b"/sub/")
    assert status == 200 and b"a.txt" in body


def test_read_only(server, tree):
    port, _ = server
    status, _, body = raw_get(
        port,
        b"/written.txt",
        method=b"POST",
        headers=b"Host: localhost\r\nContent-Length: 3\r\n",
        body=b"abc",
    )
    assert (status, body) == (405, b"The file server is read-only: use GET\n")
    assert not (tree / "root" / "written.txt").exists()
    assert not os.path.exists("written.txt")


def test_origins_as_for_the_websocket(server):
    port, _ = server
    status, _, body = raw_get(
        port,
        b"/hello.txt",
        headers=b"Host: localhost\r\nOrigin: https://evil.example\r\n",
    )
    assert (status, body) == (403, b"Origin not allowed\n")
    status, fields, body = raw_get(
        port,
        b"/hello.txt",
        headers=b"Host: localhost\r\nOrigin: http://localhost:3000\r\n",
    )
    assert (status, body) == (200, b"hello from igor\n")
    assert fields[b"access-control-allow-origin"] == b"http://localhost:3000"


def test_foreign_host_name_is_refused(server):
    port, _ = server
    status, _, body = raw_get(port, b"/hello.txt", headers=b"Host: evil.example\r\n")
    assert (status, body) == (421, b"Host not allowed\n")


def test_loopback_by_default_and_a_root_is_required(tmp_path):
    config = {"file_server_config": {"enable": True, "root_directory": str(tmp_path)}}
    service = IgorServer(api={}, config=config).service()
    assert service.listeners["igor-files"].description == "tcp:8080:interface=127.0.0.1"
    with pytest.raises(ValueError, match="needs a root_directory"):
        IgorServer(api={}, config={"file_server_config": {"enable": True}})


@pytest.mark.parametrize("which", ["websocket", "file server"])
def test_port_taken_exits_with_one_line(tmp_path, which):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    ws_port, port = (
        (taken, free_port()) if which == "websocket" else (free_port(), taken)
    )
    program = PROGRAM.format(port=port, ws_port=ws_port, root=str(tmp_path))
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, timeout=60
        )
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"igor server: cannot listen on localhost:{taken}: "
        f"port {taken} is already in use\n"
    )
