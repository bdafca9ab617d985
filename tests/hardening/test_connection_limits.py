"""--max-connections and --max-connections-per-client on a real twistd bridge."""

import socket
import urllib.request

from twistbridge.testing import BridgeProcess, wait_for


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_listener_full_gets_503_and_open_connections_go_on():
    args = ["--max-connections", "2", "--igor-port", "none"]
    with BridgeProcess(args) as server:
        host, port = server.addresses["http"].rsplit(":", 1)
        held = [
            socket.create_connection((host, int(port)), timeout=10) for _ in range(2)
        ]
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert wait_for(lambda s=sock: s.recv(65536), 5).startswith(
                b"HTTP/1.1 200 OK"
            )
        refused = socket.create_connection((host, int(port)), timeout=10)
        answer = read_all(refused)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert answer.endswith(b'{"error": "too many connections, try again"}')
        # The two open keep-alive connections still work.
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert wait_for(lambda s=sock: s.recv(65536), 5).startswith(
                b"HTTP/1.1 200 OK"
            )
        held[0].close()

        def accepted_again():
            try:
                with urllib.request.urlopen(server.url("/health"), timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        assert wait_for(accepted_again, 10, what="a free connection slot")
        held[1].close()
        # The log line reaches this process through a pipe, read by a thread.
        assert wait_for(
            lambda: (
                "refused a connection from 127.0.0.1 (listener full" in server.output
            ),
            10,
            what="the refusal's log line",
        )


def test_bgpy_listener_per_client_limit_closes_silently():
    args = ["--max-connections-per-client", "1", "--igor-port", "none"]
    with BridgeProcess(args) as server:
        host, port = server.addresses["bgpy"].rsplit(":", 1)
        first = socket.create_connection((host, int(port)), timeout=10)
        second = socket.create_connection((host, int(port)), timeout=10)
        assert read_all(second) == b""
        first.close()
