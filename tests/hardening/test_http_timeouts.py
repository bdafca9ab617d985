"""Header and idle timeouts of the HTTP port, over real sockets."""

import socket
import time
import urllib.request

import pytest

from twistbridge.testing import BridgeProcess, wait_for


@pytest.fixture(scope="module")
def server():
    args = ["--header-timeout", "1.5", "--idle-timeout", "4", "--igor-port", "none", "--bgpy-port", "none"]
    with BridgeProcess(args) as s:
        yield s


def connect(server):
    host, port = server.addresses["http"].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock):
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_slowloris_is_cut_off_after_the_header_timeout(server):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    answer = b""
    # One header byte every 0.5 s: each resets an idle timeout, not this one.
    for byte in b"Host: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(0.5)  # sleep-ok: the slow client is the behaviour under test
        sock.setblocking(False)
        try:
            answer += sock.recv(4096)
        except BlockingIOError:
            pass
        finally:
            sock.setblocking(True)
        if answer:
            break
    answer += read_all(sock)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b'{"error": "request headers took too long"}')
    assert 1.4 < elapsed < 4.0


def test_other_clients_go_on_and_complete_headers_are_fine(server):
    slow = connect(server)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for _ in range(3):
        with urllib.request.urlopen(server.url("/health"), timeout=5) as r:
            assert r.status == 200
    assert read_all(slow).startswith(b"HTTP/1.1 408 ")


def test_keep_alive_connection_gets_the_idle_timeout_not_the_header_one(server):
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = wait_for(lambda: sock.recv(65536), timeout=5, what="first response")
    assert first.startswith(b"HTTP/1.1 200 OK")
    started = time.monotonic()
    # Idle between keep-alive requests: closed by the idle timeout (4 s).
    assert read_all(sock) == b""
    elapsed = time.monotonic() - started
    assert 3.5 < elapsed < 8
