"""
Every HTTP resource has a body limit, enforced from the headers: a resource
that takes no body refuses one before reading it, and /bgpy/exec checks its
credentials before it reads a byte.  Real sockets against the demo app.

Each refusal here is answered while the client has sent the headers alone
(or one chunk): the server cannot have read, let alone spooled, the body.
"""

import json
import os
import select

import pytest
import requests

from twistbridge.testing import BridgeProcess, wait_for

pytestmark = pytest.mark.one_worker

TOKEN = "s3cret-token"
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _helpers(raw):
    global connect, health_ok, json_answer, read_response
    connect, health_ok = raw.connect, raw.health_ok
    json_answer, read_response = raw.json_answer, raw.read_response


@pytest.fixture(scope="module")
def server():
    args = ["--igor-port", "none", "--bgpy-port", "none"]
    env = dict(os.environ, BGPY_TOKEN=TOKEN)
    with BridgeProcess(args, env=env) as s:
        yield s


def read_response_nowait(sock):
    """What the server sent so far without waiting, or L{None}."""
    ready, _, _ = select.select([sock], [], [], 0.05)  # nothing is due yet
    return sock.recv(65536) if ready else None


def send_head(server, method, path, headers=b"", length=None, chunked=False):
    sock = connect(server)
    head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    if chunked:
        head += b"Transfer-Encoding: chunked\r\n"
    sock.sendall(head + headers + b"\r\n")
    return sock


@pytest.mark.parametrize(
    "method, path, length, code",
    [
        (b"POST", b"/health", 200 * MiB, 413),
        (b"GET", b"/health", 10, 400),
        (b"POST", b"/playground/app.js", 5 * MiB, 413),
        (b"PUT", b"/", 50 * MiB, 413),
        (b"GET", b"/", 1, 400),
        (b"GET", b"/ws", 5, 400),
        (b"GET", b"/bgpy/state", 1, 400),
        (b"POST", b"/bgpy/state", 1, 413),
        (b"DELETE", b"/health", 3, 400),
    ],
)
def test_a_body_on_a_bodiless_resource_is_refused_from_the_headers(
    server, method, path, length, code
):
    sock = send_head(server, method, path, length=length)
    got, body, headers = json_answer(sock)
    assert got == code
    assert body == {"error": f"{method.decode()} {path.decode()} takes no request body"}
    assert headers["connection"] == "close"
    assert health_ok(server)


@pytest.mark.parametrize(
    "method, length", [(b"POST", 120 * MiB), (b"GET", 1), (b"PUT", None)]
)
def test_a_body_to_an_unknown_path_gets_404_from_the_headers(server, method, length):
    sock = send_head(server, method, b"/nowhere", length=length, chunked=length is None)
    if length is None:
        sock.sendall(b"5\r\nhello\r\n")
    assert json_answer(sock)[:2] == (404, {"error": "no resource at /nowhere"})


def test_a_chunked_body_on_a_bodiless_resource_is_cut_at_its_first_chunk(server):
    sock = send_head(server, b"POST", b"/health", chunked=True)
    assert read_response_nowait(sock) is None
    sock.sendall(b"5\r\nhello\r\n")
    assert json_answer(sock)[:2] == (
        413,
        {"error": "POST /health takes no request body"},
    )


def test_a_body_to_a_jsonp_method_gets_404_from_the_headers(server):
    sock = send_head(server, b"POST", b"/rpc/echo", length=50 * MiB)
    assert json_answer(sock)[:2] == (404, {"error": "no resource at /rpc/echo"})


def test_bodiless_requests_still_work(server):
    sock = send_head(server, b"GET", b"/nowhere")
    status, _, _ = read_response(sock)
    assert status == "HTTP/1.1 404 Not Found"
    sock = send_head(server, b"POST", b"/health", length=0)
    status, _, _ = read_response(sock)
    assert status == "HTTP/1.1 405 Method Not Allowed"


@pytest.mark.parametrize("length", [200 * MiB, None])
def test_bgpy_exec_without_the_token_is_refused_before_the_body(server, length):
    sock = send_head(
        server,
        b"POST",
        b"/bgpy/exec",
        b"Content-Type: application/json\r\n",
        length=length,
        chunked=length is None,
    )
    code, body, headers = json_answer(sock)
    assert (code, body) == (
        401,
        {"error": "bgpy token required (Authorization: Bearer <token>)"},
    )
    assert headers["www-authenticate"] == 'Bearer realm="bgpy"'


def test_bgpy_exec_from_a_foreign_origin_is_refused_before_the_body(server):
    sock = send_head(
        server,
        b"POST",
        b"/bgpy/exec",
        b"Authorization: Bearer %s\r\nOrigin: https://evil.example\r\n"
        % TOKEN.encode(),
        length=100 * MiB,
    )
    assert json_answer(sock)[:2] == (403, {"error": "origin not allowed"})


def test_bgpy_exec_with_the_token_is_held_to_the_message_limit(server):
    auth = (
        b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        % TOKEN.encode()
    )
    sock = send_head(server, b"POST", b"/bgpy/exec", auth, length=MiB + 1)
    assert json_answer(sock)[:2] == (
        413,
        {"error": f"request body too large: {MiB + 1} bytes, the limit is {MiB} bytes"},
    )
    # Chunked: cut as it arrives, once past the limit.
    sock = send_head(server, b"POST", b"/bgpy/exec", auth, chunked=True)
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    sent = 0
    try:
        while sent < 64 * MiB and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += 64 * 1024
    except OSError:
        pass  # the server closed its side: the refusal is waiting
    # Answered as soon as the limit was crossed (plus what the socket buffers held).
    assert MiB < sent < 16 * MiB
    assert json_answer(sock)[:2] == (
        413,
        {"error": f"request body too large: a chunked body, the limit is {MiB} bytes"},
    )
    assert health_ok(server)


def test_bgpy_exec_with_the_token_still_runs(server):
    answer = requests.post(
        server.url("/bgpy/exec"),
        data=json.dumps({"a": 1}),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert answer.status_code == 200
    assert set(answer.json()) == {"state"}


def test_refused_clients_leave_the_others_alone(server):
    held = [send_head(server, b"POST", b"/nowhere", length=100 * MiB) for _ in range(5)]
    for sock in held:
        assert json_answer(sock)[0] == 404
    assert health_ok(server)
    for sock in held:
        try:
            sock.sendall(b"x" * 65536)  # still being read, and dropped
        except OSError:
            pass
        sock.close()
    assert health_ok(server)


def test_one_log_line_per_refusal(server):
    sock = send_head(server, b"POST", b"/logged-once", length=10)
    assert json_answer(sock)[0] == 404
    sock.close()
    assert health_ok(server)
    # The server logs in order and the test reads its output in a thread:
    # once a later request's access line is in, the refusal's would be too.
    marker = requests.get(server.url("/health/after-the-refusal"), timeout=10)
    assert marker.status_code == 200
    wait_for(lambda: "GET /health/after-the-refusal" in server.output, what="marker")
    assert (
        len([line for line in server.output.splitlines() if "/logged-once" in line])
        == 1
    )
