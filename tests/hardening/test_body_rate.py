"""
--min-body-rate: a body trickled after complete headers is cut off (408),
while a client that sends its body at a normal pace is not.  The exact
timing in memory with a fake clock; then over real sockets.
"""

import json
import time

import pytest
import requests
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

from twistbridge.channel import REFUSAL_LINGER, BridgeChannel, body_too_slow
from twistbridge.request import BridgeRequest
from twistbridge.testing import BridgeProcess

pytestmark = pytest.mark.one_worker


class Echo(Resource):
    isLeaf = True

    def max_body_size(self, request):
        return None

    def render_POST(self, request):
        return b"got %d" % len(request.content.read())


def connect(rate=1024, window=10.0):
    clock = Clock()
    site = Site(Echo(), reactor=clock)
    site.protocol = BridgeChannel
    site.requestFactory = BridgeRequest
    channel = site.buildProtocol(None)
    channel.callLater = clock.callLater
    channel._clock = clock
    channel.min_body_rate = rate
    channel.body_window = window
    transport = StringTransport()
    transport.loseWriteConnection = lambda: setattr(transport, "half_closed", True)
    channel.makeConnection(transport)
    return channel, transport, clock


def head(length=None):
    h = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
    h += (
        b"Content-Length: %d\r\n" % length
        if length is not None
        else b"Transfer-Encoding: chunked\r\n"
    )
    return h + b"\r\n"


def answer(transport):
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


SLOW = json.dumps({"error": body_too_slow(1024, 10.0)}).encode()


def test_a_trickled_body_is_cut_after_one_window():
    channel, transport, clock = connect()
    channel.dataReceived(head(100_000))
    for _ in range(4):  # one byte every 2 s: each would reset an idle timeout
        clock.advance(2)
        channel.dataReceived(b"x")
    assert transport.value() == b""
    clock.advance(1.999)
    assert transport.value() == b""
    clock.advance(0.001)  # 10 s after the headers, 4 bytes of the 10 KiB due
    assert answer(transport) == (b"HTTP/1.1 408 Request Timeout", SLOW)
    assert transport.half_closed
    channel.dataReceived(b"x" * 100)  # dropped
    clock.advance(REFUSAL_LINGER)
    assert transport.disconnecting


def test_a_body_that_keeps_up_is_never_cut():
    channel, transport, clock = connect()
    channel.dataReceived(head(100_000))
    sent = 0
    while sent < 100_000:
        clock.advance(2)
        channel.dataReceived(b"x" * 3_000)  # 1500 bytes/s
        sent += 3_000
        if sent + 3_000 > 100_000:
            channel.dataReceived(b"x" * (100_000 - sent))
            sent = 100_000
    assert answer(transport) == (b"HTTP/1.1 200 OK", b"got 100000")


def test_the_rest_of_a_short_body_is_all_a_window_asks_for():
    channel, transport, clock = connect()
    channel.dataReceived(head(50) + b"x" * 40)
    clock.advance(9)
    channel.dataReceived(b"x" * 10)  # 10 bytes, under 1 KiB/s, but all that was left
    assert answer(transport) == (b"HTTP/1.1 200 OK", b"got 50")
    clock.advance(30)
    assert answer(transport) == (b"HTTP/1.1 200 OK", b"got 50")


def test_each_request_on_a_connection_gets_its_own_windows():
    channel, transport, clock = connect()
    channel.dataReceived(head(20_000) + b"x" * 12_000)
    clock.advance(9)
    channel.dataReceived(b"x" * 8_000)  # complete, its window still set
    assert answer(transport) == (b"HTTP/1.1 200 OK", b"got 20000")
    transport.clear()
    channel.dataReceived(head(20_000) + b"x" * 5_000)
    clock.advance(1)  # the first request's window ending counts for nothing
    assert transport.value() == b""
    clock.advance(8.999)
    assert transport.value() == b""
    clock.advance(0.001)
    assert answer(transport) == (b"HTTP/1.1 408 Request Timeout", SLOW)


def test_a_chunked_body_is_held_to_the_rate_too():
    channel, transport, clock = connect()
    channel.dataReceived(head() + b"3\r\nabc\r\n")
    clock.advance(10)
    assert answer(transport) == (b"HTTP/1.1 408 Request Timeout", SLOW)


def test_a_body_arriving_with_its_headers_sets_no_timer():
    channel, transport, clock = connect()
    channel.dataReceived(head(5) + b"hello")
    assert answer(transport) == (b"HTTP/1.1 200 OK", b"got 5")
    assert [c for c in clock.getDelayedCalls() if c.func == channel._check_body] == []


def test_no_minimum_when_the_rate_is_zero():
    channel, transport, clock = connect(rate=0)
    channel.dataReceived(head(5) + b"h")
    clock.advance(50)  # under Twisted's own idle timeout (60 s)
    channel.dataReceived(b"ello")
    assert answer(transport) == (b"HTTP/1.1 200 OK", b"got 5")


@pytest.fixture(scope="module")
def server():
    args = [
        "--idle-timeout",
        "1",
        "--min-body-rate",
        "1K",
        "--igor-port",
        "none",
        "--bgpy-port",
        "none",
    ]
    with BridgeProcess(args) as s:
        yield s


def test_a_trickling_client_is_cut_while_a_normal_one_works(raw, server):
    slow = raw.connect(server)
    slow.sendall(
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    started = time.monotonic()
    got = b""
    for _ in range(40):
        try:
            slow.sendall(b" ")
        except OSError:
            break
        time.sleep(0.25)  # sleep-ok: the trickle is the behaviour under test
        slow.setblocking(False)
        try:
            got += slow.recv(65536)
        except BlockingIOError:
            pass
        finally:
            slow.setblocking(True)
        if got:
            break
    status, headers, body = raw.read_response(slow) if not got else (None, None, None)
    elapsed = time.monotonic() - started
    if got:
        head, _, body = got.partition(b"\r\n\r\n")
        status = head.split(b"\r\n")[0].decode()
    assert status == "HTTP/1.1 408 Request Timeout"
    assert json.loads(body) == {"error": body_too_slow(1024, 1.0)}
    assert elapsed < 5
    # Meanwhile and after, a well-behaved client is served.
    call = {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
    answer = requests.post(server.url("/rpc"), json=call, timeout=10)
    assert answer.json() == {"jsonrpc": "2.0", "result": 5, "id": 1}
    big = requests.post(
        server.url("/"), files={"file": ("a", b"x" * 4_000_000)}, timeout=30
    )
    assert big.json()["files"] == [{"filename": "a", "size": 4_000_000}]
