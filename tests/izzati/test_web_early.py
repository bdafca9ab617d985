"""
BridgeRequest's early hooks (max_body_size, body_consumer), in memory with
StringTransport and a fake clock.
"""

import json

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from twistbridge.channel import REFUSAL_LINGER
from twistbridge.request import BridgeRequest


class Consumer:
    def __init__(self):
        self.chunks = []
        self.aborted = []

    def write(self, data):
        self.chunks.append(data)

    def abort(self, reason):
        self.aborted.append(reason)


class Probe(Resource):
    """Records what the request looked like when rendered."""

    isLeaf = True

    def __init__(self, limit=None, consume=False):
        Resource.__init__(self)
        self.limit = limit
        self.consume = consume
        self.consumers = []
        self.rendered = []
        self.asked = []

    def max_body_size(self, request):
        self.asked.append((request.method, request.path))
        return self.limit

    def body_consumer(self, request):
        if not self.consume:
            return None
        consumer = Consumer()
        self.consumers.append(consumer)
        return consumer

    def render(self, request):
        self.rendered.append(
            (
                request.method,
                request.content.read(),
                request.args,
                getattr(request, "body_consumer", None),
            )
        )
        return b"ok"


class Plain(Resource):
    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.seen = []

    def render_POST(self, request):
        self.seen.append((request.content.read(), request.args))
        return b"plain"


def connect(resource):
    clock = MemoryReactorClock()
    site = Site(resource, reactor=clock)
    site.requestFactory = BridgeRequest
    channel = site.buildProtocol(None)
    transport = StringTransport()
    transport.loseWriteConnection = lambda: setattr(transport, "half_closed", True)
    channel.makeConnection(transport)
    return channel, transport, clock


def head(length=None, chunked=False, extra=b""):
    h = b"POST /up?x=1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    if length is not None:
        h += b"Content-Length: %d\r\n" % length
    if chunked:
        h += b"Transfer-Encoding: chunked\r\n"
    return h + extra + b"\r\n"


def root_with(child):
    root = Resource()
    root.putChild(b"up", child)
    return root


def test_content_length_over_limit_answers_413_before_any_body():
    probe = Probe(limit=10)
    channel, transport, clock = connect(root_with(probe))
    channel.dataReceived(head(11, extra=b"Expect: 100-continue\r\n"))
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b"100 Continue" not in out
    assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {
        "error": "request body too large: 11 bytes, the limit is 10 bytes"
    }
    assert probe.asked == [(b"POST", b"/up")]
    # The body still arriving is dropped; nothing reaches the resource.
    channel.dataReceived(b"a=123456789")
    channel.dataReceived(b"POST /up HTTP/1.1\r\n\r\n")
    assert probe.rendered == []
    assert transport.value() == out and transport.half_closed
    # After lingering, the connection is aborted.
    assert not transport.disconnecting
    clock.advance(REFUSAL_LINGER)
    assert transport.disconnecting


def test_chunked_body_growing_past_limit_is_refused_and_consumer_aborted():
    probe = Probe(limit=8, consume=True)
    channel, transport, clock = connect(root_with(probe))
    channel.dataReceived(head(chunked=True) + b"5\r\nabcde\r\n")
    assert transport.value() == b""
    assert probe.consumers[0].chunks == [b"abcde"]
    channel.dataReceived(b"5\r\nfghij\r\n0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert b"a chunked body, the limit is 8 bytes" in transport.value()
    (reason,) = probe.consumers[0].aborted
    assert "a chunked body, the limit is 8 bytes" in str(reason.value)
    assert probe.rendered == []
    # The connection going away later does not abort the consumer twice.
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(probe.consumers[0].aborted) == 1


def test_consumer_takes_the_body_instead_of_content():
    probe = Probe(limit=100, consume=True)
    channel, transport, clock = connect(root_with(probe))
    channel.dataReceived(head(7) + b"a=1")
    channel.dataReceived(b"&b=2")
    consumer = probe.consumers[0]
    assert consumer.chunks == [b"a=1", b"&b=2"]
    ((method, content, args, seen),) = probe.rendered
    # Twisted did not buffer or parse the form: only the query string is in args.
    assert (method, content, args, seen) == (b"POST", b"", {b"x": [b"1"]}, consumer)
    assert consumer.aborted == []
    assert transport.value().startswith(b"HTTP/1.1 200 OK")


def test_connection_lost_mid_body_aborts_the_consumer_once():
    probe = Probe(consume=True)
    channel, transport, clock = connect(root_with(probe))
    channel.dataReceived(head(100) + b"a=1")
    channel.connectionLost(Failure(ConnectionDone()))
    (reason,) = probe.consumers[0].aborted
    assert reason.check(ConnectionDone)
    assert probe.rendered == []


def test_resource_without_hooks_takes_no_body():
    plain = Plain()
    channel, transport, clock = connect(root_with(plain))
    channel.dataReceived(head(7))
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {
        "error": "POST /up takes no request body"
    }
    channel.dataReceived(b"a=1&b=2")
    assert plain.seen == []


def test_resource_without_a_limit_buffers_as_twisted_does():
    plain = Plain()
    plain.max_body_size = lambda request: None
    channel, transport, clock = connect(root_with(plain))
    channel.dataReceived(head(7) + b"a=1&b=2")
    assert plain.seen == [(b"a=1&b=2", {b"x": [b"1"], b"a": [b"1"], b"b": [b"2"]})]
    assert transport.value().startswith(b"HTTP/1.1 200 OK")


def test_under_the_limit_and_keep_alive():
    probe = Probe(limit=7)
    channel, transport, clock = connect(root_with(probe))
    channel.dataReceived(head(7) + b"a=1&b=2" + head(3) + b"c=3")
    assert [r[1] for r in probe.rendered] == [b"a=1&b=2", b"c=3"]
    assert transport.value().count(b"HTTP/1.1 200 OK") == 2


def test_unknown_path_and_get_are_untouched():
    probe = Probe(limit=1)
    channel, transport, clock = connect(root_with(probe))
    channel.dataReceived(b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    assert probe.asked == []


def test_large_reads_are_set_on_the_socket_transport_under_wrappers():
    from twisted.internet.abstract import FileDescriptor
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

    from twistbridge.request import LARGE_READ, _read_larger

    class Socketish(FileDescriptor):
        pass

    inner = Socketish()
    wrapper = ProtocolWrapper(WrappingFactory(None), None)
    wrapper.transport = inner
    assert wrapper.bufferSize == FileDescriptor.bufferSize  # forwarded read
    _read_larger(wrapper)
    assert inner.bufferSize == LARGE_READ
    assert "bufferSize" not in vars(wrapper)
