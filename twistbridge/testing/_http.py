"""
HTTP in memory: Twisted's own HTTP/1.1 client (L{Agent}) over in-memory
connections to the bridge's L{twistbridge.web.BridgeSite}, and the
L{Response} tests read.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

__all__ = ["Response", "multipart_body"]

FileSpec = Union[bytes, Tuple[str, bytes], Tuple[str, bytes, str]]


class Response:
    """
    One HTTP answer.

    @ivar status: the status code (C{200}).
    @ivar headers: header name (lower case) to its values, in order.
    @ivar body: the body, whole.
    """

    def __init__(self, status: int, headers: Dict[str, List[str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        """The last value of header C{name} (any case), or L{None}."""
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:60]!r}>"


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body written at once (the whole body is in the test's hands)."""

    def __init__(self, body: bytes, chunked: bool = False) -> None:
        self.body = body
        self.length = UNKNOWN_LENGTH if chunked else len(body)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Endpoint:
    """Connects L{Agent}'s protocol to a new in-memory server connection."""

    def __init__(self, connect: Any) -> None:
        self._connect = connect

    def connect(self, factory: Any) -> Deferred:
        protocol = factory.buildProtocol(None)
        self._connect(protocol)
        return defer.succeed(protocol)


def make_agent(reactor: Any, connect: Any) -> Agent:
    """An L{Agent} whose every request opens a connection through C{connect}."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    return Agent.usingEndpointFactory(reactor, _EndpointFactory(connect), pool=pool)


class _EndpointFactory:
    def __init__(self, connect: Any) -> None:
        self._connect = connect

    def endpointForURI(self, uri: Any) -> _Endpoint:
        return _Endpoint(self._connect)


def request(
    agent: Agent,
    method: str,
    url: str,
    body: Optional[bytes],
    headers: Optional[Mapping[str, Union[str, List[str]]]],
    chunked: bool = False,
) -> Deferred:
    """Send one request; a L{Deferred} of its L{Response}."""
    raw = Headers()
    for name, value in (headers or {}).items():
        values = value if isinstance(value, list) else [value]
        raw.setRawHeaders(name, values)
    producer = None if body is None else _BytesProducer(body, chunked)
    d = agent.request(method.encode("ascii"), url.encode("utf-8"), raw, producer)

    async def read(answer: Any) -> Response:
        done: Deferred = Deferred()
        answer.deliverBody(_Body(done))
        data = await done
        got = {
            k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
            for k, vs in answer.headers.getAllRawHeaders()
        }
        return Response(answer.code, got, data)

    return d.addCallback(lambda answer: defer.ensureDeferred(read(answer)))


class _Body(Protocol):
    """Collects a response body (what C{readBody} does, without its warning
    about in-memory transports)."""

    def __init__(self, done: Deferred) -> None:
        self.done = done
        self.parts: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


def multipart_body(
    fields: Mapping[str, Any], files: Mapping[str, FileSpec]
) -> Tuple[bytes, str]:
    """
    A C{multipart/form-data} body as browsers (and izzati's C{Frontend},
    through C{requests}) send it: form fields, then files.

    @param fields: name to value (a value that is not text is sent as JSON).
    @param files: name to C{bytes}, C{(filename, bytes)} or C{(filename,
        bytes, content_type)}.
    @return: the body and its C{Content-Type}.
    """
    boundary = uuid.uuid4().hex
    parts: List[bytes] = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
            f"\r\n\r\n".encode()
            + text.encode("utf-8")
            + b"\r\n"
        )
    for name, spec in files.items():
        if isinstance(spec, bytes):
            filename, content, ctype = name, spec, "application/octet-stream"
        elif len(spec) == 2:
            filename, content = spec
            ctype = "application/octet-stream"
        else:
            filename, content, ctype = spec
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
