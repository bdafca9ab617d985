"""
Header and idle timeouts of the HTTP port: their exact timing in memory, on
the test clock; then other clients going on beside a slow one, over real
sockets.
"""

import socket
import urllib.request

import pytest

from twistbridge import Bridge
from twistbridge.testing import BridgeProcess, BridgeTestClient

pytestmark = pytest.mark.one_worker


@pytest.fixture(scope="module")
def server():
    args = [
        "--header-timeout",
        "1.5",
        "--idle-timeout",
        "4",
        "--igor-port",
        "none",
        "--bgpy-port",
        "none",
    ]
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


@pytest.fixture
def memory():
    with BridgeTestClient(Bridge(header_timeout=1.5, idle_timeout=4)) as client:
        yield client


def test_slowloris_is_cut_off_after_the_header_timeout(memory):
    conn = memory.connect("http")
    conn.write(b"GET /health HTTP/1.1\r\n")
    # One header byte every 0.5 s: each resets an idle timeout, not this one.
    for byte in b"Host: 127.0.0.1\r\n":
        memory.advance(0.5)
        if conn.received:
            break
        conn.write(bytes([byte]))
    assert memory.reactor.seconds() == 1.5
    answer = conn.received
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b'{"error": "request headers took too long"}')


def test_other_clients_go_on_and_complete_headers_are_fine(server):
    slow = connect(server)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for _ in range(3):
        with urllib.request.urlopen(server.url("/health"), timeout=5) as r:
            assert r.status == 200
    assert read_all(slow).startswith(b"HTTP/1.1 408 ")


def test_keep_alive_connection_gets_the_idle_timeout_not_the_header_one(memory):
    conn = memory.connect("http")
    conn.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert conn.received.startswith(b"HTTP/1.1 200 OK")
    # Idle between keep-alive requests: closed by the idle timeout (4 s),
    # not by the header timeout (1.5 s).
    memory.advance(3.9)
    assert not conn.closed
    memory.advance(0.1)
    assert conn.closed
