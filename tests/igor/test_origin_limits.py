"""Origin checks, limits and shutdown, against real servers."""

import json
import os
import signal
import socket

import pytest
import websocket

from twistbridge.testing import wait_for

from .conftest import TwistdServer

pytestmark = pytest.mark.one_worker

ACCEPTED = [
    None,  # no Origin header: non-browser clients
    "null",  # sandboxed pages, Electron file: pages
    "file://",
    "http://localhost",
    "http://localhost:3000",
    "https://localhost:8443",
    "http://127.0.0.1:5678",
    "http://[::1]:8080",
    "HTTP://LOCALHOST:4200",
]
REFUSED = [
    "http://evil.example",
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "http://evil.example:80@localhost",
    "https://app.example.com.evil",
    "ws://localhost:3000",
]


def open_with_origin(url, origin):
    if origin is None:
        return websocket.create_connection(url, timeout=10, suppress_origin=True)
    return websocket.create_connection(url, timeout=10, origin=origin)


def echo(ws):
    ws.send(json.dumps({"streamId": "o", "action": "echo", "data": "ok"}))
    return json.loads(ws.recv())


@pytest.mark.parametrize("origin", ACCEPTED)
def test_origin_accepted(url, origin):
    ws = open_with_origin(url, origin)
    try:
        assert echo(ws) == {"streamId": "o", "data": "ok"}
    finally:
        ws.close()


@pytest.mark.parametrize("origin", REFUSED)
def test_origin_refused(url, origin):
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        open_with_origin(url, origin)
    assert e.value.status_code == 403


def test_refused_origin_is_logged(twistd_server):
    with pytest.raises(websocket.WebSocketBadStatusException):
        open_with_origin(twistd_server.url(), "http://logged.example")
    wait_for(
        lambda: "origin http://logged.example is not allowed" in twistd_server.output,
        10,
    )
    # Wait for the next line to be sure the refusal's lines are all out.
    ok = open_with_origin(twistd_server.url(), None)
    assert echo(ok) == {"streamId": "o", "data": "ok"}
    ok.close()
    lines = [
        line for line in twistd_server.output.splitlines() if "logged.example" in line
    ]
    assert len(lines) == 1, lines


def test_allowed_origin_option():
    from twistbridge.testing import BridgeProcess

    env = dict(os.environ)
    args = [
        "--igor-allowed-origin",
        "https://app.example.com",
        "--igor-allowed-origin",
        "http://other.example:8080",
    ]
    with BridgeProcess(args, env=env) as server:
        for path, name in (("/", "igor"), ("/ws", "http")):
            url = server.url(path, scheme="ws", name=name)
            for origin in (
                "https://app.example.com",
                "HTTPS://APP.EXAMPLE.COM:443",
                "http://other.example:8080",
                "null",
                "http://localhost:1",
            ):
                ws = open_with_origin(url, origin)
                assert echo(ws) == {"streamId": "o", "data": "ok"}
                ws.close()
            for origin in (
                "http://app.example.com",
                "http://other.example",
                "https://evil.example",
            ):
                with pytest.raises(websocket.WebSocketBadStatusException) as e:
                    open_with_origin(url, origin)
                assert e.value.status_code == 403


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def small_server():
    """
    igor_test_app:small (max_message_size 1M), for the tests whose clients
    leave it as they found it.
    """
    with TwistdServer("igor_test_app:small") as server:
        yield server


def test_reader_that_stops_reading_is_disconnected(small_server):
    # max_message_size 1M: a client may have 8 MiB unsent (the minimum cap).
    server = small_server
    url = server.url()
    logged = len(server.output)
    healthy = websocket.create_connection(url, timeout=10)
    before = vm_rss_kib(server.process.pid)
    slow = websocket.create_connection(
        url, timeout=10, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
    )
    slow.send(json.dumps({"streamId": "f", "action": "flood"}))
    # Never read from `slow`: the server must cut it off.
    wait_for(
        lambda: "stopped reading: disconnected" in server.output[logged:],
        30,
        what="cut-off",
    )
    grown = vm_rss_kib(server.process.pid) - before
    assert grown < 48 * 1024, f"server grew {grown} KiB"
    # Everybody else is unaffected.
    healthy.send(json.dumps({"streamId": "h", "action": "echo", "data": 1}))
    assert json.loads(healthy.recv()) == {"streamId": "h", "data": 1}
    assert json.loads(healthy.recv()) == {"streamId": "h", "close": True}
    # The slow client finds its connection dropped once it reads.
    with pytest.raises((websocket.WebSocketException, OSError)):
        while True:
            slow.recv()
    healthy.close()


def test_message_over_the_limit_closes_with_1009(small_server):
    server = small_server
    ws = websocket.create_connection(server.url(), timeout=10)
    ws.send(
        json.dumps({"streamId": "big", "action": "echo", "data": "x" * (1024 * 1024)})
    )
    frame = ws.recv_data_frame(control_frame=True)[1]
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1009
    ok = websocket.create_connection(server.url(), timeout=10)
    ok.send(json.dumps({"streamId": "s", "action": "echo", "data": "x" * 1000}))
    assert json.loads(ok.recv())["data"] == "x" * 1000
    ok.close()


@pytest.mark.parametrize("kind", ["twistd", "compat"])
def test_system_exit_closes_stream_then_stops_gracefully(servers, kind):
    server = servers.twistd() if kind == "twistd" else servers.compat()
    with server:
        url = server.url()
        other = websocket.create_connection(url, timeout=10)
        other.send(json.dumps({"streamId": "w", "action": "nap", "data": 0.5}))
        assert json.loads(other.recv()) == {"streamId": "w", "data": "started"}
        ws = websocket.create_connection(url, timeout=10)
        ws.send(
            json.dumps(
                {"streamId": "igor_shutdown", "action": "shutdown", "data": None}
            )
        )
        assert json.loads(ws.recv()) == {"streamId": "igor_shutdown", "data": "bye"}
        assert json.loads(ws.recv()) == {"streamId": "igor_shutdown", "close": True}
        # The other client's stream finishes, then it is told the server goes away.
        assert json.loads(other.recv()) == {"streamId": "w", "data": "slept"}
        assert json.loads(other.recv()) == {"streamId": "w", "close": True}
        frame = other.recv_data_frame(control_frame=True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1001
        assert server.process.wait(20) == 0


def test_sigterm_closes_websockets_with_1001(servers):
    with servers.twistd() as server:
        ws = websocket.create_connection(server.url("/ws", name="http"), timeout=10)
        ws.send(json.dumps({"streamId": "w", "action": "nap", "data": 0.3}))
        assert json.loads(ws.recv()) == {"streamId": "w", "data": "started"}
        server.signal(signal.SIGTERM)
        assert json.loads(ws.recv()) == {"streamId": "w", "data": "slept"}
        assert json.loads(ws.recv()) == {"streamId": "w", "close": True}
        frame = ws.recv_data_frame(control_frame=True)[1]
        assert int.from_bytes(frame.data[:2], "big") == 1001
        assert server.process.wait(20) in (0, -signal.SIGTERM)


def test_plain_http_get_is_answered_426(twistd_server):
    import requests

    for url in (
        twistd_server.url("/ws", scheme="http", name="http"),
        twistd_server.url("/", scheme="http"),
    ):
        assert requests.get(url, timeout=10).status_code == 426


def test_garbage_instead_of_a_handshake_is_refused(twistd_server, connect):
    c = socket.create_connection(("127.0.0.1", twistd_server.port("igor")), timeout=10)
    c.sendall(b"\x00\x01garbage\r\n\r\n")
    assert c.recv(100).startswith(b"HTTP/1.1 400 ")
    c.close()
    ok = connect(twistd_server.url())
    assert ok.call("echo", 1)[0] == {"streamId": "s1", "data": 1}


def test_thread_handler_waits_for_a_reader_that_stopped(servers):
    # A plain-def handler sending in a loop is held back while the client's
    # buffer is full; the client is dropped (over the unsent cap, or not
    # answering pings after twice --idle-timeout) and the handler's next
    # send raises.
    with servers.twistd("igor_test_app:small", ["--idle-timeout", "1"]) as server:
        url = server.url()
        before = vm_rss_kib(server.process.pid)
        slow = websocket.create_connection(
            url, timeout=10, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
        )
        slow.send(json.dumps({"streamId": "f", "action": "flood_thread"}))

        def status():
            c = websocket.create_connection(url, timeout=10)
            try:
                c.send(json.dumps({"streamId": "q", "action": "flood_status"}))
                return json.loads(c.recv())["data"]
            finally:
                c.close()

        wait_for(lambda: status()["ended"] == 1, 30, what="the flood handler to end")
        sent = status()["sent"]
        # Held back: about the unsent-data cap (8 MiB = 64 messages) plus what
        # the kernel's socket buffers took, not an unbounded queue (unchecked,
        # this loop sends thousands in the 2 s it runs).
        assert sent < 200, sent
        assert vm_rss_kib(server.process.pid) - before < 48 * 1024
        wait_for(
            lambda: (
                "ping timeout" in server.output
                or "did not respond" in server.output
                or "stopped reading: disconnected" in server.output
            ),
            10,
            what="the log line of the dropped client",
        )
