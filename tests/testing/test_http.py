"""izzati uploads and raw HTTP through the in-memory client."""

import hashlib

from twistbridge import Bridge
from twistbridge.testing import BridgeTestClient


def test_upload_fields_and_files(bridge_client):
    content = bytes(range(256)) * 1000
    response = bridge_client.upload(
        text={"name": "report", "n": "3"},
        files={"file": ("data.bin", content), "other": ("b.txt", b"hi")},
    )
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert response.json() == {
        "text": {"name": "report", "n": "3"},
        "files": [
            {
                "name": "file",
                "filename": "data.bin",
                "size": 256000,
                "sha256": hashlib.sha256(content).hexdigest(),
            },
            {
                "name": "other",
                "filename": "b.txt",
                "size": 2,
                "sha256": hashlib.sha256(b"hi").hexdigest(),
            },
        ],
    }


def test_upload_of_form_fields_only(bridge_client):
    response = bridge_client.upload(text={"a": "1"})
    assert response.json() == {"text": {"a": "1"}, "files": []}


def test_too_large_upload_is_refused_before_the_body_is_read():
    small = Bridge(max_upload_size=500)
    small.izzati(lambda text, data: {"n": len(data)})
    with BridgeTestClient(small) as client:
        response = client.upload(files={"file": ("big", b"x" * 1000)})
        assert response.status == 413
        assert client.runtime.offloader.calls == {"thread": 0, "process": 0}
        assert client.upload(files={"file": ("ok", b"x")}).json() == {"n": 1}


def test_health_and_raw_http(bridge_client):
    health = bridge_client.http("GET", "/health")
    assert health.status == 200
    assert health.json()["status"] == "ok"
    wrong = bridge_client.http("PUT", "/")
    assert wrong.status == 405
    assert wrong.header("Allow") == "GET, HEAD, POST"


def test_malformed_request_bytes(bridge_client):
    answer = bridge_client.raw("http", b"GARBAGE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_header_timeout_on_the_test_clock(bridge_client):
    # Half a request's headers, then silence: the header timeout (10 s) answers 408.
    conn = bridge_client.connect("http")
    conn.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    bridge_client.advance(9.9)
    assert conn.received == b""
    bridge_client.advance(0.2)
    assert conn.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_answers_match_a_real_server_byte_for_byte(bridge_client, apps_env):
    # The same requests, as bytes, to twistd over a socket and in memory:
    # the same status line, headers (but Date) and body.
    import socket

    from twistbridge.testing import BridgeProcess

    body = b'{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 7}'
    requests_ = [
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body,
        b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 7\r\nConnection: close\r\n\r\nname=ab",
    ]

    def without_date(answer):
        head, _, rest = answer.partition(b"\r\n\r\n")
        lines = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"date:")]
        return lines, rest

    args = ["--app", "testkit_app:bridge", "--igor-port", "none", "--bgpy-port", "none"]
    with BridgeProcess(args, env=apps_env) as server:
        for raw in requests_:
            host, port = server.addresses["http"].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(raw)
                real = b""
                while chunk := sock.recv(65536):
                    real += chunk
            assert without_date(bridge_client.raw("http", raw)) == without_date(real)
