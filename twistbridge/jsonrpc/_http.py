"""
The HTTP side of JSON-RPC answers, on twisted.web requests: the headers and
body of an answer (C{headersOut}, C{cookiesOut}, CORS, gzip), CORS
preflights, HTTP-level errors, and the L{Connection} a method's magic
parameter gets.  The decisions are L{twistbridge.jsonrpc._httprules}'s; this
module reads and sets the request's headers.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING, Any, Optional

from twisted.logger import Logger
from twisted.web import http

from twistbridge.jsonrpc._dispatch import (
    Connection,
    Dispatcher,
    PathOptions,
    new_connection,
)
from twistbridge.jsonrpc._encode import dumps
from twistbridge.jsonrpc._httprules import (
    cookie_arguments,
    cors_headers,
    decode_cookies,
    decode_headers,
    should_compress,
)

if TYPE_CHECKING:
    from twistbridge.jsonrpc._controller import RpcController

#: The logger of every JSON-RPC adapter module: one namespace, the one the
#: adapter's lines have always had, whichever module logs them.
log = Logger(namespace="twistbridge.jsonrpc._resource")

#: The C{Content-Type} of JSON answers.
JSON = b"application/json"


def request_connection(
    request: Any, ctl: RpcController, disp: Dispatcher, jsonp: Any = False
) -> Connection:
    """The L{Connection} of C{request}, to a method of C{disp}."""
    return new_connection(
        peer(request),
        decode_headers(request.requestHeaders.getAllRawHeaders()),
        decode_cookies(request.received_cookies),
        disp.path,
        ctl.server,
        disp.options.compress_min_size is not None,
        jsonp,
    )


def peer(request: Any) -> str:
    """The client's address, for log lines (C{"?"} when unknown)."""
    try:
        return str(request.getClientAddress().host)
    except Exception:
        return "?"


def respond(
    request: Any,
    opts: PathOptions,
    payload: Optional[bytes],
    conn: Any,
    status: Optional[int] = None,
    content_type: bytes = JSON,
) -> bytes:
    """Set the headers of an answer and return its body (b"" for 204)."""
    if opts.cors:
        set_cors(request, opts)
    forced = None
    if conn is not None:
        for name, value in conn["headersOut"].items():
            try:
                request.setHeader(
                    str(name).encode("latin-1"), str(value).encode("latin-1")
                )
            except (UnicodeEncodeError, ValueError) as e:
                log.warn("ignored headersOut {name!r}: {e}", name=name, e=e)
        for cookie in conn["cookiesOut"]:
            add_cookie(request, cookie)
        forced = conn.get("_compressChoice")
    if payload is None:
        request.setResponseCode(http.NO_CONTENT)
        return b""
    if status is not None:
        request.setResponseCode(status)
    if conn is None or not request.responseHeaders.hasHeader(b"content-type"):
        request.setHeader(b"Content-Type", content_type)
    if forced is not None or opts.compress_min_size is not None:
        accept = request.getHeader(b"accept-encoding")
        if should_compress(
            accept.decode("latin-1") if accept else None,
            len(payload),
            opts.compress_min_size,
            forced,
        ):
            payload = gzip.compress(payload, 6)
            request.setHeader(b"Content-Encoding", b"gzip")
        request.setHeader(b"Vary", b"Accept-Encoding")
    return payload


def add_cookie(request: Any, cookie: Any) -> None:
    """Set one C{cookiesOut} entry on the answer; a bad one is logged and skipped."""
    kwargs = cookie_arguments(cookie)
    if kwargs is None:
        log.warn("ignored a cookiesOut entry without name and value: {c!r}", c=cookie)
        return
    if isinstance(kwargs.get("expires"), (int, float)):
        kwargs["expires"] = http.datetimeToString(kwargs["expires"])
    try:
        request.addCookie(str(cookie["name"]), str(cookie["value"]), **kwargs)
    except Exception as e:
        log.warn("ignored a bad cookiesOut entry {c!r}: {e}", c=cookie, e=e)


def set_cors(request: Any, opts: PathOptions) -> None:
    """Set the C{Access-Control-*} headers of the path's C{cors} option."""
    origin = request.getHeader(b"origin")
    for name, value in cors_headers(
        opts.cors, origin.decode("latin-1") if origin else None
    ):
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))


def preflight(request: Any, opts: PathOptions) -> bytes:
    """Answer a CORS preflight (C{OPTIONS}): 204 with C{Allow}."""
    request.setResponseCode(http.NO_CONTENT)
    request.setHeader(
        b"Allow", b"GET, POST, OPTIONS" if opts.jsonp else b"POST, OPTIONS"
    )
    if opts.cors:
        set_cors(request, opts)
    return b""


def plain_error(request: Any, code: int, message: str) -> bytes:
    """An HTTP-level error (404, 405, 413, 415, ...) as a JSON body."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", JSON)
    return dumps({"error": message, "code": code}).encode()
