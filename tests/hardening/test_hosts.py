"""
Host checking (DNS rebinding): the pure rule, then every HTTP listener over
real sockets, the WebSocket handshakes included.
"""

import json
import socket

import pytest
import websocket

from twistbridge.hosts import host_allowed, split_host
from twistbridge.testing import BridgeProcess

pytestmark = pytest.mark.one_worker

EVIL = "attacker.example"


@pytest.mark.parametrize(
    "host",
    [
        None,
        "localhost",
        "LOCALHOST:5020",
        "localhost.",
        "app.localhost:8080",
        "127.0.0.1",
        "127.0.0.1:5020",
        "127.1.2.3:1",
        "[::1]",
        "[::1]:5020",
        "::1",
    ],
)
def test_loopback_names_are_allowed(host):
    assert host_allowed(host)


@pytest.mark.parametrize(
    "host",
    [
        EVIL,
        "attacker.example:5020",
        "localhost.attacker.example",
        "127.0.0.1.attacker.example",
        "10.0.0.1",
        "[::2]:80",
        "",
        "localhost:http",
        "[::1",
    ],
)
def test_other_names_are_refused(host):
    assert not host_allowed(host)


def test_the_setting_and_the_machines_names():
    assert host_allowed("app.example.com:443", ["app.example.com"])
    assert host_allowed("App.Example.Com", ["app.example.com"])
    assert not host_allowed("www.app.example.com", ["app.example.com"])
    assert host_allowed("www.app.example.com", ["*.app.example.com"])
    assert not host_allowed("app.example.com", ["*.app.example.com"])
    assert host_allowed("app.example.com:8443", ["app.example.com:8443"])
    assert not host_allowed("app.example.com:8080", ["app.example.com:8443"])
    assert host_allowed(EVIL, ["*"])
    assert host_allowed("myhost:5020", (), ["myhost", "192.168.1.5"])
    assert host_allowed("192.168.1.5", (), ["myhost", "192.168.1.5"])
    assert host_allowed("[fe80::1]:5020", (), ["fe80::1"])
    assert not host_allowed("192.168.1.6", (), ["myhost", "192.168.1.5"])
    assert split_host("[::1]:80") == ("::1", "80")
    assert split_host("Name.:80") == ("name", "80")


@pytest.fixture(scope="module")
def server():
    with BridgeProcess(
        ["--allowed-host", "app.example.com", "--bgpy-port", "none"]
    ) as s:
        yield s


def request(
    raw, server, host, method=b"GET", path=b"/health", body=b"", ctype=b"", name="http"
):
    sock = raw.connect(server, name)
    head = b"%s %s HTTP/1.1\r\n" % (method, path)
    if host is not None:
        head += b"Host: %s\r\n" % host.encode()
    if body:
        head += b"Content-Length: %d\r\nContent-Type: %s\r\n" % (len(body), ctype)
    sock.sendall(head + b"Connection: close\r\n\r\n" + body)
    return raw.read_response(sock)


def refusal(host):
    return {
        "error": f"Host {host!r} is not served here; if this server should answer it "
        f"(behind a reverse proxy, say), start it with --allowed-host {split_host(host)[0]}"
    }


@pytest.mark.parametrize(
    "method, path, body, ctype",
    [
        (b"GET", b"/health", b"", b""),
        (b"GET", b"/", b"", b""),
        (
            b"POST",
            b"/rpc",
            b'{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}',
            b"text/plain",
        ),
        (b"POST", b"/", b"a=1", b"application/x-www-form-urlencoded"),
        (b"GET", b"/bgpy/state", b"", b""),
        (b"GET", b"/nowhere", b"", b""),
    ],
)
def test_a_foreign_host_gets_421_before_the_resource_runs(
    raw, server, method, path, body, ctype
):
    status, headers, answer = request(
        raw, server, EVIL + ":80", method, path, body, ctype
    )
    assert status == "HTTP/1.1 421 Misdirected Request"
    assert headers["content-type"] == "application/json"
    assert json.loads(answer) == refusal(EVIL + ":80")


def test_allowed_hosts_are_answered(raw, server):
    port = server.port()
    for host in [
        None,
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        "app.localhost",
        "127.0.0.2",
        "app.example.com",
        "app.example.com:443",
        socket.gethostname(),
    ]:
        status, _, _ = request(raw, server, host)
        assert status == "HTTP/1.1 200 OK", host


def test_http_1_0_without_a_host_is_answered(raw, server):
    sock = raw.connect(server)
    sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    assert raw.read_response(sock)[0] == "HTTP/1.0 200 OK"


def test_two_host_headers_are_a_bad_request(raw, server):
    sock = raw.connect(server)
    sock.sendall(
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n"
    )
    status, _, body = raw.read_response(sock)
    assert status == "HTTP/1.1 400 Bad Request"
    assert body == b'{"error": "more than one Host header"}'


def test_one_log_line_per_refused_request(raw, server):
    request(raw, server, "logged-once.example")
    assert raw.health_ok(server)
    lines = [
        line for line in server.output.splitlines() if "logged-once.example" in line
    ]
    assert len(lines) == 1 and "421" in lines[0]


@pytest.mark.parametrize("listener, path", [("http", "/ws"), ("igor", "/")])
def test_websocket_handshakes_check_the_host(server, listener, path):
    url = f"ws://{server.addresses[listener]}{path}"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, host=EVIL, timeout=10)
    assert refused.value.status_code == 421
    ws = websocket.create_connection(url, host="app.example.com", timeout=10)
    ws.close()
    ws = websocket.create_connection(url, timeout=10)
    ws.close()
