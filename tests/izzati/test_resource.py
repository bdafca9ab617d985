"""IzzatiResource in process: limits, no callback, and mounted in a plain Site."""

import json

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.testing import StringTransport
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from twistbridge import Bridge
from twistbridge.izzati._resource import IzzatiResource
from twistbridge.web import BridgeSite

BOUNDARY = "zz"
MULTIPART = (
    b"--zz\r\n"
    b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n'
    b"--zz\r\n"
    b'Content-Disposition: form-data; name="file"; filename="f.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\nhello\r\n"
    b"--zz--\r\n"
)


def request_with(content_type):
    request = DummyRequest([b""])
    request.method = b"POST"
    request.requestHeaders.setRawHeaders(b"Content-Type", [content_type])
    return request


def test_limit_from_registration_then_settings():
    bridge = Bridge(max_upload_size="1M")
    resource = IzzatiResource(bridge, bridge.offloader)
    multipart = request_with(b"multipart/form-data; boundary=zz")
    form = request_with(b"application/x-www-form-urlencoded")
    bridge.izzati(lambda text, data: {})
    assert resource.max_body_size(multipart) == 1024**2
    bridge.izzati(lambda text, data: {}, max_upload_size="2G", replace=True)
    assert resource.max_body_size(multipart) == 2 * 1024**3
    # Forms and JSON are held in memory: never more than 16 MiB.
    assert resource.max_body_size(form) == 16 * 1024**2
    bridge.izzati(lambda text, data: {}, max_upload_size=100, replace=True)
    assert resource.max_body_size(form) == 100


def post(site, body, content_type=b"multipart/form-data; boundary=zz"):
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    return transport


async def answer(transport, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if b"\r\n\r\n" in transport.value():
            head, _, body = transport.value().partition(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(body) >= length:
                return head, body
        d = defer.Deferred()
        reactor.callLater(0.01, d.callback, None)
        await d
    raise AssertionError(f"no answer: {transport.value()!r}")


@pytest_twisted.ensureDeferred
async def test_bridge_site_without_izzati_callback_is_404():
    bridge = Bridge()
    transport = post(BridgeSite(bridge.resource(), bridge.settings), MULTIPART)
    head, body = await answer(transport)
    assert head.startswith(b"HTTP/1.1 404 ")
    assert json.loads(body) == {
        "error": "no izzati callback is registered on this server"
    }


@pytest_twisted.ensureDeferred
async def test_plain_site_falls_back_to_request_content():
    bridge = Bridge()
    seen = []

    @bridge.izzati(run_in="reactor")
    def upload(text, data):
        seen.append([(f.filename, f.read()) for f in data])
        return {"text": text}

    site = Site(IzzatiResource(bridge, bridge.offloader), parsePOSTFormSubmission=False)
    head, body = await answer(post(site, MULTIPART))
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: application/json\r\n" in head
    assert json.loads(body) == {"text": {"a": "1"}}
    assert seen == [[("f.txt", b"hello")]]
    # The limit still holds on this path (checked once the body is in).
    bridge.izzati(upload, run_in="reactor", max_upload_size=10, replace=True)
    head, body = await answer(post(site, MULTIPART))
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {
        "error": f"request body too large: {len(MULTIPART)} bytes, the limit is 10"
    }
    assert len(seen) == 1


@pytest_twisted.ensureDeferred
async def test_async_callback_and_queue_first():
    bridge = Bridge()
    calls = []

    async def upload(queue, text, data, extra):
        calls.append((queue, text, extra))
        return ["ok"]

    bridge.izzati(upload, args=("Q", "E"))
    bridge.izzati_registration.queue_first = True
    head, body = await answer(
        post(
            BridgeSite(bridge.resource(), bridge.settings),
            b"x=1",
            b"application/x-www-form-urlencoded",
        )
    )
    assert json.loads(body) == ["ok"]
    assert calls == [("Q", {"x": "1"}, "E")]


def _site_with_reactor_callback():
    bridge = Bridge()

    @bridge.izzati(run_in="reactor")
    def upload(text, data):
        return {"text": text, "sizes": [f.size for f in data]}

    return BridgeSite(bridge.resource(), bridge.settings)


_FUZZ_SITE = []


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=300).map(lambda b: MULTIPART[: len(b) % len(MULTIPART)] + b),
    st.lists(st.integers(min_value=1, max_value=400), max_size=6),
)
def test_any_body_gets_a_json_answer(body, cuts):
    """Whatever the body and however it is split, the answer is complete JSON."""
    if not _FUZZ_SITE:
        _FUZZ_SITE.append(_site_with_reactor_callback())
    channel = _FUZZ_SITE[0].buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    data = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=zz"
        b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        channel.dataReceived(data[start:cut])
        start = max(start, cut)
    head, _, answer = transport.value().partition(b"\r\n\r\n")
    code = int(head.split(b" ")[1])
    assert code in (200, 400), head
    assert b"Content-Type: application/json\r\n" in head
    assert isinstance(json.loads(answer), dict)
    assert b"Content-Length: %d\r\n" % len(answer) in head + b"\r\n"
