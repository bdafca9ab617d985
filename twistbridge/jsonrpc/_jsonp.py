"""
JSON-RPC's JSONP fallback: C{GET <path>/<method>?<param>=<value>&jsonp=<cb>}
answers C{cb(<result>);} as JavaScript, for paths (or methods) that switch it
on.  The query string's rules are L{twistbridge.jsonrpc._httprules}'s.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge._internals import connection_lost
from twistbridge.jsonrpc._core import (
    Call,
    Error,
    forbidden,
    internal_error,
    invalid_params,
    method_error,
    method_not_found,
)
from twistbridge.jsonrpc._dispatch import BUILTIN_METHODS
from twistbridge.jsonrpc._encode import dumps
from twistbridge.jsonrpc._http import (
    JSON,
    log,
    plain_error,
    preflight,
    request_connection,
    respond,
)
from twistbridge.jsonrpc._httprules import jsonp_body, jsonp_params, valid_callback
from twistbridge.jsonrpc._openrpc import DISCOVER

if TYPE_CHECKING:
    from twistbridge.jsonrpc._resource import RpcResource

_perf = time.perf_counter


class JsonpResource(Resource):
    """
    C{GET <path>/<method>?<param>=<value>&jsonp=<callback>}: the JSONP
    fallback, answering C{callback(<result>);} as JavaScript.
    """

    isLeaf = True
    body_refusal_code = http.NOT_FOUND  # a body here: 404 unread (twistbridge.web)

    def __init__(self, parent: RpcResource, name: bytes) -> None:
        Resource.__init__(self)
        self.parent = parent
        self.name = name

    def render(self, request: Any) -> Any:
        """Answer a JSONP call (GET), a preflight (OPTIONS), or 404/405."""
        ctl = self.parent.controller
        disp = ctl.dispatcher(self.parent.path)
        if disp is None or request.postpath:
            return plain_error(request, http.NOT_FOUND, "no such JSON-RPC path")
        opts = disp.options
        if request.method == b"OPTIONS":
            return preflight(request, opts)
        if request.method not in (b"GET", b"HEAD"):
            return plain_error(
                request, http.NOT_FOUND, f"not found (JSON-RPC calls go to {disp.path})"
            )
        try:
            name = self.name.decode("utf-8")
            callback, params = jsonp_params(request.args)
        except UnicodeDecodeError:
            return plain_error(request, http.BAD_REQUEST, "query string is not UTF-8")
        if callback is not None and not valid_callback(callback):
            return plain_error(
                request, http.BAD_REQUEST, "jsonp must be a JavaScript name"
            )
        method = disp.methods.get(name)
        enabled = opts.jsonp if method is None or method.jsonp is None else method.jsonp
        if not enabled:
            log.info("JSONP refused for {path}/{name}", path=disp.path, name=name)
            return plain_error(request, http.FORBIDDEN, "JSONP is not enabled here")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        ctype = b"application/javascript" if callback else JSON
        call = Call(name, params, None, False)

        def answer(payload: Any, conn: Any = None) -> bytes:
            return respond(
                request, opts, jsonp_body(callback, payload), conn, None, ctype
            )

        def error(err: Error) -> bytes:
            return answer(dumps({"error": err.to_dict()}).encode())

        if opts.auth is not None:
            # Before the method is looked up: a client the auth function
            # refuses learns nothing of the method names or signatures.
            conn = request_connection(request, ctl, disp, callback or False)
            conn["method"] = name
            conn["_call"] = call
            try:
                allowed = opts.auth(conn, name) is True
            except Exception:
                log.failure("JSON-RPC auth function raised; the call is refused")
                allowed = False
            if not allowed:
                request.setResponseCode(http.FORBIDDEN)
                return error(forbidden())
        if method is None and name not in BUILTIN_METHODS:
            return error(method_not_found(name))
        if "_" in params and (method is None or "_" not in method.binder.names):
            del params["_"]  # jQuery's cache buster
        if method is not None:
            why = method.binder.check(params)
            if why is not None:
                return error(invalid_params(why))
        if opts.auth is None:
            conn = request_connection(request, ctl, disp, callback or False)
            conn["method"] = name
            conn["_call"] = call
        if method is None:
            if name == DISCOVER:
                from twistbridge._version import __version__

                return answer(dumps(disp.openrpc(__version__)).encode())
            return answer(dumps(disp.list_methods()).encode())
        t0 = _perf()
        ctl.stats_data.processing += 1
        d = ctl.run(method, call, conn, opts.blocking)
        state: Dict[str, Any] = {"sync": True, "body": None}

        def ok(result: Any) -> None:
            ctl.stats_data.record(disp.path, name, _perf() - t0, True)
            try:
                payload = dumps(result, opts.json_default).encode()
            except (TypeError, ValueError):
                payload = dumps({"error": internal_error().to_dict()}).encode()
            finish(answer(payload, conn if method.magic else None))

        def bad(failure: Failure) -> None:
            ctl.stats_data.record(disp.path, name, _perf() - t0, False)
            if not failure.check(CancelledError):
                log.failure(
                    "JSON-RPC method {method!r} raised (JSONP)", failure, method=name
                )
            finish(error(method_error(failure.value)))

        def finish(body: bytes) -> None:
            ctl.stats_data.processing -= 1
            if state["sync"]:
                state["body"] = body
                return
            if connection_lost(request) or request.finished:
                return
            request.write(body)
            request.finish()

        d.addCallbacks(ok, bad)
        state["sync"] = False
        if state["body"] is not None:
            return state["body"]
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET
