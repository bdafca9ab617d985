"""
JSON-RPC on the HTTP channel's lean path (L{twistbridge._lean}): the one
call a plain request holds, answered without a twisted.web C{Request}.

L{lean_answer} takes only what today's path would answer with a plain
C{200} JSON body and nothing else to decide: a single call (not a
notification, not a batch) of a method that runs in the reactor, takes no
C{_connection}, is bound to its params, on a path without C{auth}, CORS,
compression or C{blocking}, while no lock is held, with a body within
C{max_request_size} and small enough to parse inline, sent as JSON (not as
a form).  For anything else it returns L{None} before it has done anything,
and the request goes through twisted.web and L{twistbridge.jsonrpc._resource}
as it always did: errors, batches, notifications, thread and process
methods, JSONP, preflights.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, List

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistbridge.jsonrpc._core import Call, Error, method_error
from twistbridge.jsonrpc._encode import encode_error
from twistbridge.jsonrpc._exchange import encode_answer, log_failure
from twistbridge.jsonrpc._httprules import (
    acceptable_raw_content_type,
    content_type_verdicts,
    is_form_content_type,
)
from twistbridge.jsonrpc._parse import INLINE_PARSE, parse
from twistbridge.offload import call_now

if TYPE_CHECKING:
    from twistbridge.jsonrpc._resource import RpcResource

_perf = time.perf_counter


def lean_answer(resource: RpcResource, request: Any) -> Any:
    """
    The answer to C{request} (a L{twistbridge._lean.LeanRequest}) POSTed to
    C{resource}: the JSON body, a L{Deferred<twisted.internet.defer.Deferred>}
    of it (a method still running), or L{None} when the request is not one
    this path answers (see the module docstring).
    """
    ctl = resource.controller
    disp = ctl.dispatcher(resource.path)
    if disp is None:
        return None
    opts = disp.options
    if (
        opts.auth is not None
        or opts.cors
        or opts.compress_min_size is not None
        or opts.blocking
    ):
        return None
    body = request.body
    limit = ctl.registry.settings.max_request_size
    if len(body) >= INLINE_PARSE or (limit and len(body) > limit):
        return None
    ctype = request.headers.get(b"content-type")
    if ctype is not None and (
        is_form_content_type(ctype)
        or not (
            content_type_verdicts.get((ctype, opts.allow_form_content))
            or acceptable_raw_content_type(ctype, opts.allow_form_content)
        )
    ):
        return None
    if ctl.locks.active():
        return None
    parsed = parse(body, opts.max_batch_size)
    if isinstance(parsed, Error) or parsed.batch:
        return None
    call = parsed.items[0]
    if type(call) is not Call or call.notification:
        return None
    method = disp.methods.get(call.method)
    if (
        method is None
        or method.magic is not None
        or method.handler.run_in != "reactor"
        or method.binder.check(call.params) is not None
    ):
        return None
    # Taken: from here on, this is the call's only answer.
    stats = ctl.stats_data
    stats.requests += 1
    stats.processing += 1
    t0 = _perf()
    params = call.params
    func = method.handler.func
    if type(params) is list:
        result, d = call_now(func, *params)
    elif params:
        result, d = call_now(func, **params)
    else:
        result, d = call_now(func)
    if d is None:
        return _answer(result, disp, call, t0, stats)
    box: List[Any] = []
    d.addBoth(box.append)
    if box:  # a Deferred that had fired already
        return _answer(box[0], disp, call, t0, stats)
    request.cancel = d.cancel
    answer: Deferred = Deferred()
    d.addCallback(lambda _: answer.callback(_answer(box[0], disp, call, t0, stats)))
    return answer


def _answer(result: Any, disp: Any, call: Call, t0: float, stats: Any) -> bytes:
    """The body answering C{call} with C{result} (a L{Failure}: an error)."""
    stats.processing -= 1
    if isinstance(result, Failure):
        stats.record(disp.path, call.method, _perf() - t0, False)
        log_failure(result, call, disp)
        return encode_error(method_error(result.value), call.id, call.version)
    stats.record(disp.path, call.method, _perf() - t0, True)
    return encode_answer(call, result, disp.options.json_default)
