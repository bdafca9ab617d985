"""
The HTTP channel's lean path for plain JSON-RPC calls (twistbridge._lean):
which requests it answers, that every other one goes to twisted.web whole,
and that either way the client gets the same bytes as from a site without
the lean path.  Over real sockets, against a site with the lean path and
one without it, side by side; a request counts as answered by twisted.web
when the JSON-RPC resource's C{render} ran for it.
"""

from __future__ import annotations

import re
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from twistbridge._lean import MAX_HEAD, parse_request
from twistbridge.jsonrpc._resource import RpcResource
from twistbridge.listeners import ConnectionTracker
from twistbridge.web import BridgeSite

from .lean_kit import (
    CLOSE,
    HELLO,
    ONE,
    blank,
    call,
    make_bridge,
    make_site,
    memory_site,
    ok,
    post,
)


@pytest.fixture
def rendered(monkeypatch):
    """The paths twisted.web rendered, in order."""
    seen = []
    render = RpcResource.render

    def counting(self, request):
        seen.append(request.path)
        return render(self, request)

    monkeypatch.setattr(RpcResource, "render", counting)
    return seen


def read_to_close(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port, pieces):
    """Send each of C{pieces} (one C{sendall} each), read until the server
    closes; Date and Server blanked."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
        return blank(read_to_close(sock))


async def both(pieces, rendered, **settings):
    """
    What a site with the lean path and one without answer C{pieces}, and
    how many requests twisted.web rendered on each.
    """
    answers = []
    renders = []
    for lean in (True, False):
        site, _ = make_site(lean, **settings)
        port = reactor.listenTCP(0, ConnectionTracker(site), interface="127.0.0.1")
        before = len(rendered)
        try:
            answers.append(
                await threads.deferToThread(exchange, port.getHost().port, pieces)
            )
        finally:
            await port.stopListening()
        renders.append(len(rendered) - before)
    return answers, renders


# The requests the lean path answers: exactly the bytes of twisted.web's.
LEAN = {
    "single": (post(extra=CLOSE), ok(HELLO)),
    "http-1.0": (post(version=b"HTTP/1.0"), ok(HELLO, False, b"HTTP/1.0")),
    "http-1.0-keep-alive": (
        post(extra=b"Connection: keep-alive\r\n", version=b"HTTP/1.0"),
        ok(HELLO, False, b"HTTP/1.0"),
    ),
    "no-content-type": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(ONE), ONE),
        ok(HELLO),
    ),
    "lower-case-names": (
        b"POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: CLOSE\r\n"
        b"user-agent: t\r\naccept: */*\r\ncontent-length: %d\r\n\r\n%s"
        % (len(ONE), ONE),
        ok(HELLO),
    ),
    "nested-path": (post(path=b"/api/v2", extra=CLOSE), ok(HELLO)),
    "method-raises": (
        post(call(b"boom", b'["x"]'), CLOSE),
        ok(
            b'{"jsonrpc":"2.0","error":{"code":-32000,"message":"no x",'
            b'"data":{"type":"ValueError"}},"id":1}'
        ),
    ),
    "named-params": (
        post(
            b'{"jsonrpc": "2.0", "method": "echo", "params": {"data": 5}, "id": 7}',
            CLOSE,
        ),
        ok(b'{"jsonrpc":"2.0","result":5,"id":7}'),
    ),
}


@pytest.mark.parametrize("case", list(LEAN))
@pytest_twisted.ensureDeferred
async def test_the_lean_path_answers_as_twisted_web_does(case, rendered):
    raw, expected = LEAN[case]
    (lean, plain), renders = await both([raw], rendered)
    assert lean == plain == expected
    # the site without the lean path rendered it, the other did not
    assert renders == [0, 1]


# Requests left to twisted.web, whole: the same answer either way.
FALLBACK = {
    "notification": post(b'{"jsonrpc": "2.0", "method": "echo", "params": [1]}', CLOSE),
    "batch": post(b"[" + ONE + b"]", CLOSE),
    "parse-error": post(b'{"jsonrpc', CLOSE),
    "unknown-method": post(call(b"nope", b"[]"), CLOSE),
    "wrong-params": post(call(b"echo", b"[1, 2]"), CLOSE),
    "thread-pool": post(call(b"techo", b'["t"]'), CLOSE),
    "_connection": post(call(b"conn", b'["c"]'), CLOSE),
    "cors-path": post(path=b"/cors", extra=CLOSE),
    "query-string": post(path=b"/rpc?x=1", extra=CLOSE),
    "escaped-path": post(path=b"/%72pc", extra=CLOSE),
    "trailing-slash": post(path=b"/rpc/", extra=CLOSE),
    "unknown-path": post(path=b"/nowhere", extra=CLOSE),
    "form-body": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(ONE), ONE)
    ),
    "text-html": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(ONE), ONE)
    ),
    "foreign-host": post(host=b"evil.example", extra=CLOSE),
    "two-hosts": post(extra=b"Host: 127.0.0.1\r\n" + CLOSE),
    "no-host": (
        b"POST /rpc HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(ONE), ONE)
    ),
    "two-lengths": post(extra=b"Content-Length: %d\r\n" % len(ONE) + CLOSE),
    "other-header": post(extra=b"X-Trace: 1\r\n" + CLOSE),
    "cookie": post(extra=b"Cookie: a=b\r\n" + CLOSE),
    "expect": post(extra=b"Expect: 100-continue\r\n" + CLOSE),
    "folded-header": post(extra=b"User-Agent: a\r\n b\r\n" + CLOSE),
    "bare-lf": post(extra=b"User-Agent: a\nb\r\n" + CLOSE),
    # a vertical tab is a line end to Python's e-mail header parser, which
    # twisted.web's form detection runs: refused on both sites
    "vertical-tab-content-type": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type:\x0bapplication/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(ONE), ONE)
    ),
    "connection-upgrade": post(extra=b"Connection: Upgrade, close\r\n"),
    "chunked": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(ONE), ONE)
    ),
    "http-0.9-ish": post(version=b"HTTP/1.2", extra=CLOSE),
    "lower-case-method": post(extra=CLOSE).replace(b"POST", b"post", 1),
    "over-max-request-size": post(
        b'{"jsonrpc": "2.0", "method": "echo", "params": ["%s"], "id": 1}'
        % (b"x" * 5000),
        CLOSE,
    ),
    "huge-content-length": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 99999999999999999999\r\n\r\n" + ONE
    ),
    "header-flood": (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"Accept: */*\r\n" * 600
        + b"Content-Length: %d\r\n\r\n%s" % (len(ONE), ONE)
    ),
    "long-header": post(extra=b"User-Agent: " + b"u" * 20000 + b"\r\n" + CLOSE),
}


STATUS = {
    "notification": b"HTTP/1.1 204 No Content",
    "unknown-path": b"HTTP/1.1 404 Not Found",
    "form-body": b"HTTP/1.1 415 Unsupported Media Type",
    "text-html": b"HTTP/1.1 415 Unsupported Media Type",
    "foreign-host": b"HTTP/1.1 421 Misdirected Request",
    "two-hosts": b"HTTP/1.1 400 Bad Request",
    "two-lengths": b"HTTP/1.1 400 Bad Request",
    "expect": b"HTTP/1.1 100 Continue",
    "bare-lf": b"HTTP/1.1 400 Bad Request",
    "vertical-tab-content-type": b"HTTP/1.1 400 Bad Request",
    "http-0.9-ish": b"HTTP/1.1 400 Bad Request",
    "lower-case-method": b"HTTP/1.1 405 Method Not Allowed",
    "over-max-request-size": b"HTTP/1.1 413 Request Entity Too Large",
    "huge-content-length": b"HTTP/1.1 413 Request Entity Too Large",
    "header-flood": b"HTTP/1.1 400 Bad Request",
    "long-header": b"",  # a line over twisted.web's limit: closed unanswered
}


@pytest.mark.parametrize("case", list(FALLBACK))
@pytest_twisted.ensureDeferred
async def test_every_other_request_goes_to_twisted_web_whole(case, rendered):
    raw = FALLBACK[case]
    (lean, plain), renders = await both([raw], rendered)
    assert lean == plain
    assert lean.partition(b"\r\n")[0] == STATUS.get(case, b"HTTP/1.1 200 OK")
    # twisted.web rendered it on both sites (or refused it on both)
    assert renders[0] == renders[1]


@pytest_twisted.ensureDeferred
async def test_slow_bytes_go_to_twisted_web_and_get_the_same_answer(rendered):
    raw = post(extra=CLOSE)
    # one send per line, then the body in two: no read holds a whole request
    pieces = [line + b"\r\n" for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")]
    pieces += [b"\r\n", ONE[:10], ONE[10:]]
    (lean, plain), renders = await both(pieces, rendered)
    assert lean == plain == ok(HELLO)


@pytest_twisted.ensureDeferred
async def test_a_pipelined_mix_is_answered_in_order(rendered):
    raw = (
        post()  # lean
        + post(call(b"techo", b'["t"]', 2))  # the thread pool: twisted.web
        + post(call(b"echo", b'["after"]', 3))  # lean again, once that is done
        + post(b"[" + call(b"echo", b"[4]", 4) + b"]")  # a batch: twisted.web
        + post(call(b"echo", b'["last"]', 5), CLOSE)
    )
    (lean, plain), renders = await both([raw], rendered)
    assert lean == plain
    assert lean.count(b"HTTP/1.1 200 OK") == 5
    assert re.findall(rb'"id":(\d)', lean) == [b"1", b"2", b"3", b"4", b"5"]
    assert renders[1] == 5


# The lean path in memory, where the order of reads and the clock are the
# test's.


def test_the_idle_timeout_still_closes_after_lean_answers():
    clock, _, channel, transport = memory_site(idle_timeout=30)
    channel.dataReceived(post() + post())
    assert blank(transport.value()) == ok(HELLO, False) * 2
    clock.advance(29)
    assert not transport.disconnecting
    channel.dataReceived(post())
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_a_header_trickle_after_a_lean_answer_meets_the_header_timeout():
    clock, _, channel, transport = memory_site(header_timeout=5, idle_timeout=60)
    channel.dataReceived(post() + b"POST /rpc HTTP/1.1\r\nHost: 127")
    assert blank(transport.value()) == ok(HELLO, False)
    transport.clear()
    for _ in range(5):
        clock.advance(1.1)
        channel.dataReceived(b"0")
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.disconnecting


def test_each_request_read_byte_by_byte_is_answered():
    _, _, channel, transport = memory_site()
    for byte in post() + post():
        channel.dataReceived(bytes([byte]))
    assert blank(transport.value()) == ok(HELLO, False) * 2


def test_a_pending_answer_holds_what_comes_after_it():
    _, pending, channel, transport = memory_site()
    channel.dataReceived(
        post(call(b"later", b'["a"]', 1)) + post(call(b"echo", b'["b"]', 2))
    )
    (d,) = pending.calls
    assert transport.value() == b""
    channel.dataReceived(post(call(b"echo", b'["c"]', 3), CLOSE))
    assert transport.value() == b""
    d.callback("a")
    assert blank(transport.value()) == (
        ok(b'{"jsonrpc":"2.0","result":"a","id":1}', False)
        + ok(b'{"jsonrpc":"2.0","result":"b","id":2}', False)
        + ok(b'{"jsonrpc":"2.0","result":"c","id":3}')
    )
    assert transport.disconnecting


def test_a_pipelined_mix_in_memory_takes_each_path_in_turn(rendered):
    _, pending, channel, transport = memory_site()
    channel.dataReceived(
        post()  # lean
        + post(b"[" + call(b"echo", b"[2]", 2) + b"]")  # a batch: twisted.web
        + post(call(b"echo", b"[3]", 3))  # read in twisted.web's loop: there
        + post(call(b"later", b"[4]", 4))  # twisted.web, pending
        + post(call(b"echo", b"[5]", 5), CLOSE)  # held by twisted.web
    )
    assert rendered == [b"/rpc"] * 3
    assert re.findall(rb'"id":(\d)', transport.value()) == [b"1", b"2", b"3"]
    pending.calls[0].callback(4)
    # the held request is read once the channel is idle again: lean
    assert rendered == [b"/rpc"] * 3
    assert re.findall(rb'"id":(\d)', transport.value()) == [
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
    ]
    assert blank(transport.value()).endswith(ok(b'{"jsonrpc":"2.0","result":5,"id":5}'))
    assert transport.disconnecting


def test_a_lost_connection_cancels_the_pending_call():
    _, pending, channel, transport = memory_site()
    channel.dataReceived(post(call(b"later", b'["a"]')))
    channel.connectionLost(Failure(ConnectionDone()))
    assert pending.cancelled == ["a"]
    assert transport.value() == b""
    assert channel.requests == []


def test_the_parser_bounds():
    assert parse_request(post()) is not None
    big = post(extra=b"User-Agent: " + b"u" * MAX_HEAD + b"\r\n")
    assert parse_request(big) is None
    assert parse_request(post()[:-1]) is None  # the body not all there
    assert (
        parse_request(post().replace(b"Content-Length: ", b"Content-Length: +")) is None
    )


@pytest_twisted.ensureDeferred
async def test_a_drain_waits_for_a_pending_lean_answer():
    bridge, pending = make_bridge()
    site = BridgeSite(bridge.resource(), bridge.settings)
    tracker = ConnectionTracker(site)
    port = reactor.listenTCP(0, tracker, interface="127.0.0.1")
    try:
        answer = threads.deferToThread(
            exchange, port.getHost().port, [post(call(b"later", b'["z"]'))]
        )
        await pending.arrived
        drained = tracker.drain_http()
        assert not drained.called
        pending.calls[0].callback("z")
        got = await answer
        await drained
        assert got == ok(b'{"jsonrpc":"2.0","result":"z","id":1}')
    finally:
        await port.stopListening()


def test_a_failing_lean_answer_is_a_500_and_a_closed_connection(monkeypatch):
    def broken(self, request):
        raise RuntimeError("broken")

    monkeypatch.setattr(RpcResource, "lean_answer", broken)
    _, _, channel, transport = memory_site()
    channel.dataReceived(post() + post())
    body = b'{"error": "internal server error"}'
    assert transport.value() == (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    assert transport.disconnecting


@pytest.mark.parametrize(
    "method, count",
    [
        ("echo", 300),
        # a method answering with a Deferred that has already fired (a burst
        # of them recursed once per call and lost the requests behind)
        ("fired", 500),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_burst_of_pipelined_lean_calls_is_answered_in_order(method, count):
    raw = b"".join(
        post(call(method.encode(), b"[%d]" % i, i), CLOSE if i == count - 1 else b"")
        for i in range(count)
    )
    (lean, plain), _ = await both([raw], [])
    assert lean == plain
    assert re.findall(rb'"result":(\d+)', lean) == [b"%d" % i for i in range(count)]


ACCESS_FIELDS = ("client", "method", "path", "protocol", "code", "length")


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "twisted.web"])
def test_the_access_event_and_the_metrics_are_the_same(lean, rendered):
    from twistbridge import logs

    events = []
    saved, logs.access_log.observer = logs.access_log.observer, events.append
    bridge, _ = make_bridge(metrics_port=0)
    site = BridgeSite(bridge.resource(), bridge.settings, reactor=Clock())
    site._lean_plain = lean
    metrics = bridge.runtime().metrics
    metrics.start()
    try:
        channel = site.buildProtocol(None)
        transport = StringTransport(peerAddress=None)
        channel.makeConnection(transport)
        channel.dataReceived(post(extra=b"User-Agent: probe/1\r\n"))
    finally:
        metrics.stop()
        logs.access_log.observer = saved
    assert len(rendered) == (0 if lean else 1)
    (event,) = events
    assert {k: event[k] for k in ACCESS_FIELDS} == {
        "client": "192.168.1.1",
        "method": "POST",
        "path": "/rpc",
        "protocol": "HTTP/1.1",
        "code": 200,
        "length": len(HELLO),
    }
    assert event["user_agent"] == "probe/1"
    assert metrics.http_requests.values == {("jsonrpc", 200): 1}
    assert metrics.http_sent.values == {("jsonrpc",): len(HELLO)}
    assert metrics.http_received.values == {("jsonrpc",): len(ONE)}
    (buckets, total) = metrics.http_latency.values["jsonrpc"]
    assert sum(buckets) == 1


def test_a_pending_answer_is_not_timed_out_and_holds_back_a_flood():
    clock, pending, channel, transport = memory_site(idle_timeout=30)
    channel.dataReceived(post(call(b"later", b'["a"]')))
    clock.advance(100)  # no idle timeout while the answer is awaited
    assert not transport.disconnecting
    flood = post(call(b"echo", b'["b"]', 2)) * 1000  # over 64 KiB held
    channel.dataReceived(flood)
    assert transport.producerState == "paused"
    pending.calls[0].callback("a")
    assert transport.producerState == "producing"
    assert transport.value().count(b"HTTP/1.1 200 OK") == 1001
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(2)  # the idle timeout is back once it is answered
    assert transport.disconnecting


@pytest_twisted.ensureDeferred
async def test_a_control_character_in_content_type_is_answered_400(rendered):
    (lean, plain), _ = await both([FALLBACK["vertical-tab-content-type"]], rendered)
    assert lean == plain
    assert lean.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    body = (
        b'{"error": "Bad Content-Type header: it holds a control character; '
        b'send a media type such as application/json"}'
    )
    assert lean.endswith(b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
