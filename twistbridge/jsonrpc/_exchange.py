"""
The calls of one JSON-RPC HTTP request, from the parsed body to the written
answer (L{Exchange}): auth, method lookup, params binding, running the calls
(a batch's concurrently), statistics, and cancelling what still runs when the
client leaves.  L{twistbridge.jsonrpc._resource} hands it every body but the
single plain call it answers on its fast path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import NOT_DONE_YET

from twistbridge._internals import connection_lost
from twistbridge.errors import not_json_text
from twistbridge.jsonrpc._core import (
    Call,
    Error,
    Invalid,
    Parsed,
    forbidden,
    internal_error,
    invalid_params,
    method_error,
    method_not_found,
)
from twistbridge.jsonrpc._dispatch import (
    BUILTIN_METHODS,
    Connection,
    Dispatcher,
    Method,
)
from twistbridge.jsonrpc._encode import encode_error, encode_result, join
from twistbridge.jsonrpc._http import log, peer, request_connection, respond
from twistbridge.jsonrpc._openrpc import DISCOVER

if TYPE_CHECKING:
    from twistbridge.jsonrpc._controller import RpcController

_perf = time.perf_counter


class Exchange:
    """The calls of one HTTP request, from parsing to the written answer."""

    __slots__ = (
        "ctl",
        "request",
        "disp",
        "parsed",
        "parts",
        "pending",
        "deferreds",
        "conn",
        "waiting",
        "status",
    )

    def __init__(
        self,
        ctl: RpcController,
        request: Any,
        disp: Dispatcher,
        parsed: Parsed,
    ):
        self.ctl = ctl
        self.request = request
        self.disp = disp
        self.parsed = parsed
        self.parts: List[Optional[bytes]] = [None] * len(parsed.items)
        self.pending = 0
        self.deferreds: Dict[int, Deferred] = {}
        self.conn: Any = None
        self.waiting = False
        self.status: Optional[int] = None

    def builtin(self, name: str) -> Any:
        """The answer of a built-in method (listing, OpenRPC description)."""
        if name == DISCOVER:
            from twistbridge._version import __version__

            return self.disp.openrpc(__version__)
        return self.disp.list_methods()

    def connection(self) -> Connection:
        """The request's L{Connection}, built on first use."""
        if self.conn is None:
            self.conn = request_connection(self.request, self.ctl, self.disp)
        return self.conn

    def start(self) -> Any:
        """
        Answer what needs no call and start the calls: the body, or C{NOT_DONE_YET}.
        """
        disp = self.disp
        opts = disp.options
        methods = disp.methods
        parts = self.parts
        denied = 0
        for i, item in enumerate(self.parsed.items):
            if type(item) is Invalid:
                parts[i] = encode_error(item.error, item.id, item.version)
                continue
            call: Call = item  # type: ignore[assignment]
            # auth comes first: a refused client learns nothing of the method
            # names (-32601) or signatures (-32602).
            if opts.auth is not None and not self.allowed(call):
                denied += 1
                self.fail(i, call, forbidden())
                continue
            method = methods.get(call.method)
            if method is None:
                if call.method in BUILTIN_METHODS:
                    if not call.notification:
                        parts[i] = encode_result(call, self.builtin(call.method))
                    continue
                log.info(
                    "JSON-RPC from {peer}: method {method!r} not found at {path}",
                    peer=peer(self.request),
                    method=call.method,
                    path=disp.path,
                )
                self.fail(i, call, method_not_found(call.method))
                continue
            why = method.binder.check(call.params)
            if why is not None:
                self.fail(i, call, invalid_params(why))
                continue
            conn = None
            if method.magic is not None:
                conn = self.connection()
                if self.parsed.batch:
                    conn = conn.for_call()
                conn["method"] = call.method
                conn["notify"] = call.notification
                conn["_call"] = call
            self.ctl.stats_data.processing += 1
            t0 = _perf()
            d = self.ctl.run(method, call, conn, opts.blocking)
            if call.notification:
                # Nobody waits for a notification: the answer does not wait
                # for it either, and a client leaving does not cancel it.
                d.addBoth(self.notified, call, t0)
            else:
                self.attach(i, call, method, d, t0)
        if denied and not self.parsed.batch:
            self.status = http.FORBIDDEN
        if self.pending == 0:
            return self.body()
        self.waiting = True
        self.request.notifyFinish().addErrback(self.gone)
        return NOT_DONE_YET

    def attach(
        self, i: int, call: Call, method: Method, d: Deferred, t0: float
    ) -> None:
        """Wait for the result C{d} of entry C{i}."""
        self.pending += 1
        self.deferreds[i] = d
        d.addBoth(self.deliver, i, call, method, t0)

    def deliver(
        self, result: Any, i: int, call: Call, method: Method, t0: float
    ) -> None:
        """Entry C{i}'s call ended (with a result or a L{Failure})."""
        if isinstance(result, Failure):
            self.failed(result, i, call, method, t0)
        else:
            self.settled(result, i, call, method, t0)

    def notified(self, result: Any, call: Call, t0: float) -> None:
        """A notification's call ended: count it, log a failure."""
        stats = self.ctl.stats_data
        stats.processing -= 1
        failed = isinstance(result, Failure)
        stats.record(self.disp.path, call.method, _perf() - t0, not failed)
        if failed:
            log_failure(result, call, self.disp)

    def allowed(self, call: Call) -> bool:
        """Whether the path's C{auth} function lets C{call} run (C{True} only)."""
        auth = self.disp.options.auth
        assert auth is not None  # only called when the path has one
        try:
            ok = auth(self.connection(), call.method) is True
        except Exception:
            log.failure("JSON-RPC auth function raised; the call is refused")
            return False
        if not ok:
            log.info(
                "JSON-RPC from {peer}: auth refused {method!r}",
                peer=peer(self.request),
                method=call.method,
            )
        return ok

    def fail(self, i: int, call: Call, error: Error) -> None:
        """Answer entry C{i} with C{error} (nothing for a notification)."""
        if not call.notification:
            self.parts[i] = encode_error(error, call.id, call.version)

    def settled(
        self, result: Any, i: int, call: Call, method: Method, t0: float
    ) -> None:
        """Entry C{i}'s method returned C{result}."""
        self.ctl.stats_data.record(self.disp.path, call.method, _perf() - t0, True)
        if not call.notification:
            self.parts[i] = encode_answer(call, result, self.disp.options.json_default)
        self.done(i)

    def failed(
        self, failure: Failure, i: int, call: Call, method: Method, t0: float
    ) -> None:
        """Entry C{i}'s method raised, or its call was cancelled."""
        self.ctl.stats_data.record(self.disp.path, call.method, _perf() - t0, False)
        if failure.check(CancelledError) and not self.waiting:
            pass
        elif failure.check(CancelledError):
            log.info(
                "JSON-RPC call {method!r} cancelled: the client left",
                method=call.method,
            )
        else:
            log.failure(
                "JSON-RPC method {method!r} at {path} raised",
                failure,
                method=call.method,
                path=self.disp.path,
            )
        if not call.notification:
            self.parts[i] = encode_error(
                method_error(failure.value), call.id, call.version
            )
        self.done(i)

    def done(self, i: int) -> None:
        """Entry C{i} is answered; write the answer once all are."""
        self.deferreds.pop(i, None)
        self.ctl.stats_data.processing -= 1
        self.pending -= 1
        if self.pending == 0 and self.waiting:
            self.waiting = False
            if connection_lost(self.request) or self.request.finished:
                return
            body = self.body()
            if body:
                self.request.write(body)
            self.request.finish()

    def gone(self, reason: Failure) -> None:
        """The client left: cancel the calls still running."""
        if not self.waiting:
            return
        self.waiting = False
        for d in list(self.deferreds.values()):
            d.cancel()

    def body(self) -> bytes:
        """The answer's body (its headers set)."""
        payload = join(self.parts, self.parsed.batch)
        return respond(self.request, self.disp.options, payload, self.conn, self.status)


def encode_answer(
    call: Call, result: Any, default: Optional[Callable[[Any], Any]] = None
) -> bytes:
    """
    The response to C{call} returning C{result}: -32603 when the result is
    not JSON (C{default}: the path's C{json_default}).
    """
    try:
        return encode_result(call, result, default)
    except (TypeError, ValueError) as e:
        log.error(
            "JSON-RPC method {method!r} returned something that is not JSON: {error}",
            method=call.method,
            error=e,
        )
        return encode_error(
            internal_error(not_json_text(result)), call.id, call.version
        )


def log_failure(failure: Failure, call: Call, disp: Dispatcher) -> None:
    """
    Log a failed call (a cancelled one, whose client left, as info only).
    """
    if failure.check(CancelledError):
        log.info(
            "JSON-RPC call {method!r} cancelled: the client left", method=call.method
        )
    else:
        log.failure(
            "JSON-RPC method {method!r} at {path} raised",
            failure,
            method=call.method,
            path=disp.path,
        )
