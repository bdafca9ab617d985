"""The izzati endpoint over real sockets: `twistd bridge` with a test app and the demo app."""

import hashlib
import http.client
import json
import os
import socket
import time

import pytest
import requests
from izzati import Frontend

from twistbridge.testing import BridgeProcess, wait_for

from ..conftest import apps_environ

pytestmark = pytest.mark.one_worker

MiB = 1024 * 1024
BOUNDARY = "izzatiTestBoundary"


def server_fds_in(pid, directory):
    """Open descriptors of process `pid` on files under `directory` (deleted or not)."""
    found = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith(str(directory) + os.sep):
            found.append(target)
    return found


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def multipart_head(filename="big.bin", field="file"):
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
MP_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
TRUNCATED = multipart_head() + b"data without an end"


def raw_request(port, head, body=b"", timeout=10):
    """Send a raw request and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + body)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def upload_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("izzati-server-tmp")


@pytest.fixture(scope="module")
def app_server(upload_tmp, izzati_app):
    with izzati_app(upload_tmp) as server:
        yield server


@pytest.fixture(scope="module")
def limited_server():
    env = apps_environ()
    with BridgeProcess(
        [
            "--app",
            "izzati_test_app:bridge",
            "--max-upload-size",
            "1M",
            "--igor-port",
            "none",
            "--bgpy-port",
            "none",
        ],
        env=env,
    ) as server:
        yield server


# --- the real izzati client -------------------------------------------------


def test_frontend_against_demo_app(demo_server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"x" * 12345)
    url = demo_server.url("/")
    with open(path, "rb") as f:
        answer = Frontend(url).send({"name": "ann", "tag": ["a", "b"]}, f)
    # A dict back means izzati saw Content-Type exactly "application/json".
    assert answer == {
        "status": "ok",
        "text": {"name": "ann", "tag": ["a", "b"]},
        "files": [{"filename": "notes.txt", "size": 12345}],
    }
    assert Frontend(url).send({"only": "text"}) == {
        "status": "ok",
        "text": {"only": "text"},
        "files": [],
    }
    assert Frontend(url).send() == {"status": "ok", "text": {}, "files": []}


def test_frontend_file_details(app_server, tmp_path):
    content = os.urandom(300_000)
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with open(path, "rb") as f:
        answer = Frontend(app_server.url("/")).send({"k": "v"}, f)
    assert answer == {
        "text": {"k": "v"},
        "files": [
            {
                "filename": "photo.jpg",
                "name": "file",
                "content_type": "application/octet-stream",
                "size": 300_000,
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        ],
    }


def test_every_file_part_in_order(app_server):
    files = [
        ("file", ("a.txt", b"A" * 10, "text/plain")),
        ("other", ("b.png", b"B" * 20, "image/png")),
        ("file", ("", b"", "application/octet-stream")),
    ]
    r = requests.post(app_server.url("/"), data={"x": "1"}, files=files)
    assert r.status_code == 200
    assert [
        (f["filename"], f["name"], f["content_type"], f["size"])
        for f in r.json()["files"]
    ] == [
        ("a.txt", "file", "text/plain", 10),
        ("b.png", "other", "image/png", 20),
        ("", "file", "application/octet-stream", 0),
    ]


# --- big bodies ---------------------------------------------------------------


def test_200_mib_upload_streams_to_disk(app_server, upload_tmp):
    pid = app_server.process.pid
    requests.post(app_server.url("/"), files={"file": ("warm.bin", b"w" * 100_000)})
    before = vm_hwm_kib(pid)
    size = 200 * MiB
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    head = multipart_head()

    def body():
        yield head
        for i in range(size // MiB):
            chunk = block if i % 2 else block[::-1]
            digest.update(chunk)
            yield chunk
        yield TAIL

    conn = http.client.HTTPConnection("127.0.0.1", app_server.port(), timeout=60)
    conn.request(
        "POST",
        "/",
        body=body(),
        headers={
            "Content-Type": MP_TYPE,
            "Content-Length": str(len(head) + size + len(TAIL)),
        },
    )
    r = conn.getresponse()
    answer = r.read()
    conn.close()
    assert r.status == 200, answer
    assert r.getheader("Content-Type") == "application/json"
    (item,) = json.loads(answer)["files"]
    assert (item["filename"], item["size"]) == ("big.bin", size)
    assert item["sha256"] == digest.hexdigest()
    growth = vm_hwm_kib(pid) - before
    assert growth < 30 * 1024, f"peak RSS grew by {growth} KiB"
    wait_for(lambda: not server_fds_in(pid, upload_tmp), 5, what="temp files closed")


def test_file_return_100_mib_is_byte_identical(app_server, tmp_path):
    path = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(100):
            f.write(block if i % 2 else block[::-1])
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    r = requests.post(
        app_server.url("/"), data={"action": "file", "path": str(path)}, stream=True
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Length"] == str(100 * MiB)
    got = hashlib.sha256()
    n = 0
    for chunk in r.iter_content(MiB):
        got.update(chunk)
        n += len(chunk)
    assert (n, got.hexdigest()) == (100 * MiB, expected)


def test_file_return_guesses_type(app_server, tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<p>hi</p>")
    r = requests.post(app_server.url("/"), data={"action": "file", "path": str(path)})
    assert (r.status_code, r.headers["Content-Type"], r.content) == (
        200,
        "text/html; charset=utf-8",
        b"<p>hi</p>",
    )
    # Through izzati's client, a file comes back as bytes.
    assert (
        Frontend(app_server.url("/")).send({"action": "file", "path": str(path)})
        == b"<p>hi</p>"
    )


def test_file_return_missing_file_is_500(app_server, tmp_path):
    r = requests.post(
        app_server.url("/"), data={"action": "file", "path": str(tmp_path / "nope.txt")}
    )
    assert r.status_code == 500
    assert r.json() == {
        "error": "cannot send file 'nope.txt': No such file or directory"
    }


# --- other results --------------------------------------------------------------


@pytest.mark.parametrize(
    "action, content_type, body",
    [
        ("bytes", "application/octet-stream", b"\x00\x01raw"),
        ("str", "text/plain; charset=utf-8", "plain text \u00e9".encode()),
        ("deferred", "application/json", b'{"from": "deferred"}'),
        ("coroutine", "application/json", b'{"from": "coroutine"}'),
    ],
)
def test_result_kinds(app_server, action, content_type, body):
    r = requests.post(app_server.url("/"), data={"action": action})
    assert (r.status_code, r.headers["Content-Type"], r.content) == (
        200,
        content_type,
        body,
    )


def test_save_never_escapes_the_directory(app_server, tmp_path):
    target = tmp_path / "saved"
    target.mkdir()
    names = [
        "../../etc/passwd",
        "/abs/evil.sh",
        "..\\..\\win.ini",
        "nul\x00byte.txt",
        "..",
    ]
    files = [("file", (name, name.encode(), "text/plain")) for name in names]
    r = requests.post(
        app_server.url("/"), data={"action": "save", "dir": str(target)}, files=files
    )
    assert r.status_code == 200, r.text
    saved = r.json()["saved"]
    assert [os.path.basename(p) for p in saved] == [
        "passwd",
        "evil.sh",
        "win.ini",
        "nulbyte.txt",
        "upload",
    ]
    assert all(os.path.dirname(p) == str(target) for p in saved)
    assert sorted(os.listdir(target)) == sorted(
        ["passwd", "evil.sh", "win.ini", "nulbyte.txt", "upload"]
    )
    assert (target / "passwd").read_bytes() == b"../../etc/passwd"
    assert os.listdir(tmp_path) == ["saved"]


# --- errors ---------------------------------------------------------------------


def test_content_length_over_limit_is_413_before_the_body(limited_server):
    port = limited_server.port()
    calls_before = requests.post(
        limited_server.url("/"), data={"action": "calls"}
    ).json()["calls"]
    # Headers only: the 413 must come without the body ever being sent.
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        + MP_TYPE.encode()
        + b"\r\n"
        b"Content-Length: 2097152\r\n\r\n"
    )
    answer = raw_request(port, head)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 ")
    assert b"Content-Type: application/json\r\n" in status
    assert json.loads(body) == {
        "error": "request body too large: 2097152 bytes, the limit is 1048576 bytes"
    }
    after = requests.post(limited_server.url("/"), data={"action": "calls"}).json()[
        "calls"
    ]
    assert (
        after == calls_before + 1
    )  # only the "calls" request itself reached the callback


def test_izzati_client_gets_413(limited_server, tmp_path):
    path = tmp_path / "two.bin"
    path.write_bytes(b"z" * (2 * MiB))
    with open(path, "rb") as f:
        r = requests.post(limited_server.url("/"), files={"file": f})
    assert r.status_code == 413
    assert r.json()["error"].startswith("request body too large")
    # Under the limit still works on the same server.
    r = requests.post(limited_server.url("/"), files={"file": ("s.bin", b"s" * 1000)})
    assert r.status_code == 200 and r.json()["files"][0]["size"] == 1000


def test_chunked_body_over_limit_is_413(limited_server):
    def body():
        yield multipart_head()
        for _ in range(40):
            yield b"c" * 65536

    r = requests.post(
        limited_server.url("/"), data=body(), headers={"Content-Type": MP_TYPE}
    )
    assert r.status_code == 413
    assert r.json() == {
        "error": "request body too large: a chunked body, the limit is 1048576 bytes"
    }


@pytest.mark.parametrize(
    "content_type, body, message",
    [
        (
            MP_TYPE,
            TRUNCATED,
            f"malformed multipart body ({len(TRUNCATED)} bytes received): "
            "Unexpected end of multipart stream (parser closed)",
        ),
        (
            MP_TYPE,
            b"--" + BOUNDARY.encode() + b"\r\nbroken header line\r\n\r\nx" + TAIL,
            "malformed multipart body: Malformed segment header",
        ),
        ("multipart/form-data", b"whatever", "multipart/form-data without a boundary"),
        (
            "text/plain",
            b"hello",
            "unsupported Content-Type 'text/plain': send multipart/form-data, "
            "application/x-www-form-urlencoded or application/json",
        ),
        (
            "application/json",
            b'{"a": ',
            "body is not valid JSON: Expecting value: line 1 column 7 (char 6)",
        ),
        (
            "application/json",
            b'{"a": "\xff"}',
            "body is not valid JSON: 'utf-8' codec can't decode byte 0xff in position 7: "
            "invalid start byte",
        ),
        ("application/json", b"[1, 2]", "a JSON body must be an object, not list"),
    ],
)
def test_bad_bodies_are_400(app_server, content_type, body, message):
    r = requests.post(
        app_server.url("/"), data=body, headers={"Content-Type": content_type}
    )
    assert (r.status_code, r.headers["Content-Type"], r.json()) == (
        400,
        "application/json",
        {"error": message},
    )


def test_callback_exception_is_500_without_traceback(app_server):
    r = requests.post(
        app_server.url("/"), data={"action": "raise", "message": "boom 4711"}
    )
    assert (r.status_code, r.headers["Content-Type"], r.json()) == (
        500,
        "application/json",
        {"error": "ValueError: boom 4711"},
    )
    wait_for(
        lambda: "ValueError: boom 4711" in app_server.output, 5, what="traceback in log"
    )
    assert "Traceback" in app_server.output
    assert b"Traceback" not in r.content


def test_slow_callback_does_not_delay_health(app_server):
    import threading

    result = {}

    def slow():
        result["r"] = requests.post(
            app_server.url("/"), data={"action": "sleep", "seconds": "2"}
        )

    t = threading.Thread(target=slow)
    t.start()
    wait_for(
        lambda: '"busy": 1' in requests.get(app_server.url("/health")).text,
        5,
        what="busy",
    )
    start = time.monotonic()
    assert requests.get(app_server.url("/health")).status_code == 200
    assert time.monotonic() - start < 1.0
    t.join(10)
    assert result["r"].json() == {"slept": True}


def test_disconnect_mid_upload_removes_temp_files(app_server, upload_tmp):
    pid = app_server.process.pid
    port = app_server.port()
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        + MP_TYPE.encode()
        + b"\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head + multipart_head("half.bin") + b"h" * (2 * MiB))
    wait_for(lambda: server_fds_in(pid, upload_tmp), 5, what="temp file open")
    s.close()
    wait_for(lambda: not server_fds_in(pid, upload_tmp), 5, what="temp file closed")
    assert os.listdir(upload_tmp) == []
    wait_for(
        lambda: "izzati: upload from 127.0.0.1 ended after" in app_server.output,
        5,
        what="the early end logged",
    )
    assert requests.get(app_server.url("/health")).status_code == 200


def test_disconnect_while_callback_runs_cancels_it(app_server):
    port = app_server.port()
    body = b"action=sleep&seconds=2"
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head + body)
    wait_for(
        lambda: '"busy": 1' in requests.get(app_server.url("/health")).text,
        5,
        what="busy",
    )
    s.close()
    wait_for(
        lambda: "went away; cancelling its callback" in app_server.output,
        5,
        what="cancel",
    )
    assert requests.post(app_server.url("/"), data={"x": "y"}).json()["text"] == {
        "x": "y"
    }


def test_chunked_upload_within_the_limit(app_server):
    block = os.urandom(MiB)

    def body():
        yield multipart_head("chunked.bin")
        for _ in range(3):
            yield block
        yield TAIL

    # No Content-Length: requests sends the generator with Transfer-Encoding: chunked.
    r = requests.post(
        app_server.url("/"), data=body(), headers={"Content-Type": MP_TYPE}
    )
    assert r.status_code == 200
    (item,) = r.json()["files"]
    assert (item["filename"], item["size"], item["sha256"]) == (
        "chunked.bin",
        3 * MiB,
        hashlib.sha256(block * 3).hexdigest(),
    )
