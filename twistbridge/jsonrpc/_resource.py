"""
JSON-RPC's twisted.web resource: one L{RpcResource} per registered path
(C{/rpc}, C{/api}, nested paths such as C{/api/v2}, mounted by
L{twistbridge.jsonrpc._controller.RpcController.add_root}); each answers::

    POST <path>                  JSON-RPC 2.0 (single, batch, notifications)
    OPTIONS <path>               CORS preflight
    GET <path>/<method>?a=1&jsonp=cb   JSONP fallback (when switched on)

This module reads the request (its C{Content-Type}, its body within
C{max_request_size}, a large body parsed in the thread pool) and answers a
single plain call on a fast path of its own; every other body goes to
L{twistbridge.jsonrpc._exchange}, and JSONP to L{twistbridge.jsonrpc._jsonp}.
The decisions (parse, validate, bind, encode) are the pure core's
(L{twistbridge.jsonrpc._core} and its family).
"""

from __future__ import annotations

import time
from io import BytesIO
from typing import TYPE_CHECKING, Any, List, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge._internals import connection_lost
from twistbridge.jsonrpc._core import (
    SERVER_ERROR,
    Call,
    Error,
    Parsed,
    internal_error,
    method_error,
)
from twistbridge.jsonrpc._dispatch import Dispatcher, Method
from twistbridge.jsonrpc._encode import encode_error
from twistbridge.jsonrpc._exchange import Exchange, encode_answer, log_failure
from twistbridge.jsonrpc._http import (
    JSON,
    log,
    peer,
    plain_error,
    preflight,
    respond,
)
from twistbridge.jsonrpc._httprules import (
    acceptable_raw_content_type,
    content_type_verdicts,
    is_form_content_type,
)
from twistbridge.jsonrpc._jsonp import JsonpResource
from twistbridge.jsonrpc._lean import lean_answer
from twistbridge.jsonrpc._parse import INLINE_PARSE, parse, parse_large
from twistbridge.jsonrpc._registry import normalize_path
from twistbridge.offload import OffloadError, call_now

if TYPE_CHECKING:
    from twistbridge.jsonrpc._controller import RpcController

_perf = time.perf_counter


def read_body(request: Any, limit: Optional[int]) -> Optional[bytes]:
    """
    The request body, or L{None} when it is over C{limit} bytes.  A
    L{twistbridge.web.BridgeSite} already answered 413 before reading such a
    body (it asks L{RpcResource.max_body_size}); this check is for the
    resource mounted on other sites, and never reads more than C{limit + 1}
    bytes.
    """
    consumer = getattr(request, "body_consumer", None)
    content = consumer.content if consumer is not None else request.content
    if content is None:
        return b""
    content.seek(0)
    if not limit:
        return content.read()
    body = content.read(limit + 1)
    return None if len(body) > limit else body


class FormBody:
    """
    The body of a request sent with a form C{Content-Type}, kept as bytes for
    the JSON-RPC parser (L{RpcResource.body_consumer}).

    @ivar content: the body so far.
    """

    def __init__(self) -> None:
        self.content = BytesIO()

    def write(self, data: bytes) -> None:
        """Append C{data}."""
        self.content.write(data)

    def abort(self, reason: Any) -> None:
        """The body will never complete: drop it."""
        self.content = BytesIO()


class RpcResource(Resource):
    """
    The JSON-RPC endpoint of one path; its children are nested paths, and
    C{GET <path>/<method>} is the JSONP fallback.
    """

    def __init__(self, ctl: RpcController, path: str) -> None:
        Resource.__init__(self)
        self.controller = ctl
        self.path = normalize_path(path)

    #: its C{getChildWithDefault} answers from C{children} (after mounting
    #: new paths), which the HTTP channel's lean path may read directly
    lean_lookup = True

    def lean_answer(self, request: Any) -> Any:
        """A plain call's answer on the HTTP channel's lean path, or L{None}
        (see L{twistbridge.jsonrpc._lean})."""
        return lean_answer(self, request)

    def max_body_size(self, request: Any) -> Optional[int]:
        """The request body limit: the bridge's C{max_request_size}."""
        return self.controller.registry.settings.max_request_size

    def body_consumer(self, request: Any) -> Optional[FormBody]:
        """
        Take a body sent as a form ourselves (see L{twistbridge.web}): Twisted
        would otherwise split it into C{request.args} in the reactor, however
        many fields it holds, before this resource even sees it.
        """
        ctype = request.requestHeaders.getRawHeaders(b"content-type")
        if ctype is None:
            return None
        return FormBody() if is_form_content_type(ctype[0]) else None

    def getChildWithDefault(self, name: bytes, request: Any) -> Resource:
        """Mount paths registered since the last request, then find the child."""
        ctl = self.controller
        if ctl.registry.rpc_version != ctl._version:
            ctl.paths()
        return Resource.getChildWithDefault(self, name, request)

    def getChild(self, name: bytes, request: Any) -> Resource:
        """C{""} is this path itself; any other name is a JSONP method."""
        if name == b"":
            return self
        return JsonpResource(self, name)

    def render(self, request: Any) -> Any:
        """Dispatch on the HTTP method."""
        disp = self.controller.dispatcher(self.path)
        if disp is None:
            return plain_error(
                request, http.NOT_FOUND, "no JSON-RPC methods at this path"
            )
        method = request.method
        if method == b"POST":
            return self.render_rpc(request, disp)
        if method == b"OPTIONS":
            return preflight(request, disp.options)
        request.setHeader(b"Allow", b"POST, OPTIONS")
        return plain_error(
            request,
            http.NOT_ALLOWED,
            "JSON-RPC calls are POST requests (JSONP: GET <path>/<method>)",
        )

    def render_rpc(self, request: Any, disp: Dispatcher) -> Any:
        """Answer a POSTed JSON-RPC request."""
        opts = disp.options
        ctype = request.getHeader(b"content-type")
        if ctype is not None and not content_type_verdicts.get(
            (ctype, opts.allow_form_content)
        ):
            if not acceptable_raw_content_type(ctype, opts.allow_form_content):
                log.info(
                    "JSON-RPC request from {peer} with Content-Type {ctype}",
                    peer=peer(request),
                    ctype=ctype,
                )
                return plain_error(
                    request,
                    http.UNSUPPORTED_MEDIA_TYPE,
                    "JSON-RPC bodies are application/json",
                )
        body = read_body(request, self.controller.registry.settings.max_request_size)
        if body is None:
            log.info(
                "JSON-RPC request from {peer} over max_request_size",
                peer=peer(request),
            )
            request.setHeader(b"Connection", b"close")
            return plain_error(
                request, http.REQUEST_ENTITY_TOO_LARGE, "request body too large"
            )
        stats = self.controller.stats_data
        stats.requests += 1
        if len(body) >= INLINE_PARSE:
            return self._parse_in_thread(request, disp, body)
        return self.answer(request, disp, parse(body, opts.max_batch_size))

    def _parse_in_thread(self, request: Any, disp: Dispatcher, body: bytes) -> Any:
        """Parse a large body in the thread pool, then answer it."""
        d = self.controller.offloader.in_thread(
            parse_large, body, disp.options.max_batch_size
        )
        del body
        request.notifyFinish().addErrback(lambda _: d.cancel())

        def parsed(result: Any) -> None:
            if request.finished or connection_lost(request):
                return
            answer = self.answer(request, disp, result)
            if answer is not NOT_DONE_YET:
                request.write(answer)
                request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            if request.finished or connection_lost(request):
                return
            if failure.check(OffloadError):
                log.warn(
                    "JSON-RPC from {peer}: cannot parse the body: {why}",
                    peer=peer(request),
                    why=failure.getErrorMessage(),
                )
                error = Error(SERVER_ERROR, "Server busy, try again")
            else:
                log.failure("JSON-RPC: parsing a body failed", failure)
                error = internal_error()
            request.write(respond(request, disp.options, encode_error(error), None))
            request.finish()

        d.addCallbacks(parsed, failed)
        d.addErrback(lambda f: log.failure("JSON-RPC: answering a body failed", f))
        return NOT_DONE_YET

    def answer(self, request: Any, disp: Dispatcher, parsed: Any) -> Any:
        """Answer a parsed body: the response bytes, or C{NOT_DONE_YET}."""
        opts = disp.options
        if type(parsed) is Error:
            log.info(
                "JSON-RPC request from {peer}: {message} ({detail})",
                peer=peer(request),
                message=parsed.message,
                detail=parsed.data,
            )
            return respond(request, opts, encode_error(parsed), None)
        if not parsed.batch and opts.auth is None:
            call = parsed.items[0]
            if type(call) is Call and not call.notification:
                method = disp.methods.get(call.method)
                if (
                    method is not None
                    and method.magic is None
                    and method.binder.check(call.params) is None
                ):
                    return self.render_one(request, disp, call, method)
        return Exchange(self.controller, request, disp, parsed).start()

    def render_one(
        self, request: Any, disp: Dispatcher, call: Call, method: Method
    ) -> Any:
        """The fast path: one valid call that needs no connection object."""
        ctl = self.controller
        stats = ctl.stats_data
        stats.processing += 1
        opts = disp.options
        t0 = _perf()
        box: List[Any] = []
        d: Optional[Deferred] = None
        handler = method.handler
        params = call.params
        if opts.blocking or ctl.locks.active():
            d = ctl.run(method, call, None, opts.blocking)
        elif handler.run_in == "reactor":
            # No Deferred when the handler is done at once (the usual case):
            # one Deferred and its callback less a call.
            if type(params) is list:
                result, d = call_now(handler.func, *params)
            elif params:
                result, d = call_now(handler.func, **params)
            else:
                result, d = call_now(handler.func)
            if d is None:
                box.append(result)
        elif type(params) is list:
            d = ctl.offloader.call(handler, *params)
        elif params:
            d = ctl.offloader.call(handler, **params)
        else:
            d = ctl.offloader.call(handler)
        later: List[Exchange] = []

        def deliver(result: Any) -> None:
            if later:
                later[0].deliver(result, 0, call, method, t0)
            else:
                box.append(result)

        if d is not None:
            d.addBoth(deliver)
        if not box:
            assert d is not None
            exchange = Exchange(ctl, request, disp, Parsed(False, [call]))
            exchange.pending = 1
            exchange.deferreds[0] = d
            exchange.waiting = True
            later.append(exchange)
            request.notifyFinish().addErrback(exchange.gone)
            return NOT_DONE_YET
        result = box[0]
        stats.processing -= 1
        if isinstance(result, Failure):
            stats.record(disp.path, call.method, _perf() - t0, False)
            log_failure(result, call, disp)
            payload = encode_error(method_error(result.value), call.id, call.version)
        else:
            stats.record(disp.path, call.method, _perf() - t0, True)
            payload = encode_answer(call, result, opts.json_default)
        if not opts.cors and opts.compress_min_size is None:
            request.setHeader(b"Content-Type", JSON)
            return payload
        return respond(request, opts, payload, None)
