"""
flaskJSONRPCServer's C{simulateRequest} (one call run as if a client had
sent it, without a socket) and C{getWSGI} (a WSGI app of the server's
JSON-RPC paths, for a WSGI server of the user's own).
"""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from typing import Any, Callable, Dict, List, Optional, Tuple, cast
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistbridge.app import normalize_path
from twistbridge.jsonrpc import _core as core
from twistbridge.jsonrpc import _dispatch as dispatch
from twistbridge.jsonrpc import _encode as encode
from twistbridge.jsonrpc import _httprules as httprules
from twistbridge.jsonrpc import _parse as parse_
from twistbridge.jsonrpc._compathttp import (
    OriginalRequest,
    _query_args,
    call_auth,
    format_path,
)

__all__ = ["simulate", "wsgi_app"]


def _headers_out(opts: Any, conn: Any) -> List[Tuple[str, str]]:
    headers: List[Tuple[str, str]] = [("Content-Type", "application/json")]
    if opts.cors:
        headers += httprules.cors_headers(opts.cors, None)
    for name, value in conn["headersOut"].items():
        headers.append((str(name), str(value)))
    for cookie in conn["cookiesOut"]:
        if isinstance(cookie, dict) and "name" in cookie and "value" in cookie:
            jar: SimpleCookie = SimpleCookie()
            jar[str(cookie["name"])] = str(cookie["value"])
            jar[str(cookie["name"])]["path"] = cookie.get("path", "/")
            headers.append(("Set-Cookie", jar[str(cookie["name"])].OutputString()))
    return headers


def simulate(
    server: Any,
    name: str,
    args: Any,
    path: str,
    headers: Optional[Dict[str, str]],
    cookies: Optional[Dict[str, str]],
    notify: bool,
    check_auth: bool = True,
) -> Deferred:
    """
    Run one call as if a client sent it (in the reactor thread): a
    L{Deferred} of C{(entries, headers)} as flaskJSONRPCServer's
    C{simulateRequest} returns them.
    """
    from twistbridge.jsonrpc._compathttp import MainError

    ctl = server.rpc
    disp = ctl.dispatcher(normalize_path(path))
    if disp is None or not disp.methods:
        return defer.fail(MainError(f"404 Not Found: no methods at {path}"))
    params = args if args is not None else []
    call = core.Call(name, params, None if notify else 1, notify)
    conn = dispatch.new_connection(
        "localhost",
        dict(headers or {}),
        dict(cookies or {}),
        disp.path,
        server,
        disp.options.compress_min_size is not None,
    )
    conn["method"] = name
    conn["notify"] = notify
    conn["_call"] = call
    if check_auth and server.settings["auth"] is not None:
        info = OriginalRequest(
            path=format_path(disp.path),
            fileName="",
            headers=dict(headers or {}),
            cookies=dict(cookies or {}),
            environ={
                "REQUEST_METHOD": "POST",
                "PATH_INFO": path,
                "REMOTE_ADDR": "localhost",
            },
            remote_addr="localhost",
            method="POST",
            url="localhost" + path,
            data=[call_dict(call)],
            args={},
            servedBy=(None, None, None),
            ip="localhost",
            fake=True,
        )
        d = server.bridge.offloader.in_thread(call_auth, server, info)
    else:
        d = defer.succeed(True)

    def run(allowed: bool) -> Any:
        if not allowed:
            raise MainError("403 Forbidden: the auth function refused the call")
        method = disp.methods.get(name)
        if method is None:
            return [dict(core.method_not_found(name).to_dict(), id=call.id)]
        why = method.binder.check(params)
        if why is not None:
            return [dict(core.invalid_params(why).to_dict(), id=call.id)]
        t0 = time.perf_counter()
        ctl.stats_data.processing += 1
        ran = ctl.run(method, call, conn, disp.options.blocking)

        def ok(result: Any) -> Any:
            ctl.stats_data.processing -= 1
            ctl.stats_data.record(disp.path, name, time.perf_counter() - t0, True)
            return [] if notify else [{"id": call.id, "data": result}]

        def bad(failure: Failure) -> Any:
            ctl.stats_data.processing -= 1
            ctl.stats_data.record(disp.path, name, time.perf_counter() - t0, False)
            return [dict(core.method_error(failure.value).to_dict(), id=call.id)]

        ran.addCallbacks(ok, bad)
        return ran

    d.addCallback(run)
    d.addCallback(lambda entries: (entries, _headers_out(disp.options, conn)))
    return d


def call_dict(call: core.Call) -> Dict[str, Any]:
    """A call as the JSON-RPC request object it came from."""
    d: Dict[str, Any] = {"jsonrpc": "2.0", "method": call.method, "params": call.params}
    if not call.notification:
        d["id"] = call.id
    return d


def wsgi_app(server: Any) -> Callable[..., Any]:
    """
    A WSGI app answering JSON-RPC POSTs (single calls and batches) and
    JSONP GETs (C{<path>/<method>?...&jsonp=cb}) to the server's paths,
    for a WSGI server in another thread: each request blocks its WSGI
    thread while the calls run on twistbridge's reactor.
    """
    from twisted.internet.threads import blockingCallFromThread

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = normalize_path(environ.get("PATH_INFO", "/"))
        disp = server.rpc.dispatcher(path)
        if method == "GET" and path != "/":
            parent, _, name = path.rpartition("/")
            return jsonp(environ, start_response, parent or "/", name)
        if disp is None or not disp.methods:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found"]
        if method == "OPTIONS":
            start_response("204 No Content", [("Allow", "POST, OPTIONS")])
            return [b""]
        if method != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST, OPTIONS")])
            return [b"JSON-RPC calls are POST requests"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = server.bridge.settings.max_request_size
        if limit and length > limit:
            start_response(
                "413 Request Entity Too Large", [("Content-Type", "text/plain")]
            )
            return [b"request body too large"]
        body = environ["wsgi.input"].read(length) if length else b""
        parsed = parse_.parse(body, disp.options.max_batch_size)
        if type(parsed) is core.Error:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [encode.encode_error(parsed)]
        parsed = cast(core.Parsed, parsed)  # the Error was answered above
        if server.settings["auth"] is not None:
            info = _wsgi_info(environ, path, body)
            if not call_auth(server, info):
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"Forbidden"]
        parts: List[Optional[bytes]] = []
        headers: List[Tuple[str, str]] = []
        for item in parsed.items:
            if type(item) is core.Invalid:
                parts.append(encode.encode_error(item.error, item.id, item.version))
                continue
            item = cast(core.Call, item)
            # Typed as a Deferred's result or the Deferred; it is the result.
            answer: Any = blockingCallFromThread(
                server._reactor,
                simulate,
                server,
                item.method,
                item.params,
                path,
                _wsgi_info(environ, path, body)["headers"],
                {},
                item.notification,
                False,
            )
            entries, headers = answer
            if item.notification:
                parts.append(None)
            elif "code" not in entries[0]:
                parts.append(
                    encode.encode_result(
                        item, entries[0]["data"], disp.options.json_default
                    )
                )
            else:
                error = core.Error(
                    entries[0]["code"], entries[0]["message"], entries[0].get("data")
                )
                parts.append(encode.encode_error(error, item.id, item.version))
        payload = encode.join(parts, parsed.batch)
        if payload is None:
            start_response("204 No Content", [])
            return [b""]
        if not headers:
            headers = [("Content-Type", "application/json")]
        start_response("200 OK", headers)
        return [payload]

    def jsonp(
        environ: Dict[str, Any],
        start_response: Callable[..., Any],
        path: str,
        name: str,
    ) -> List[bytes]:
        disp = server.rpc.dispatcher(path)
        if disp is None or not disp.methods:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found"]
        method = disp.methods.get(name)
        enabled = (
            disp.options.jsonp
            if method is None or method.jsonp is None
            else method.jsonp
        )
        if not enabled:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"JSONP_DENIED"]
        try:
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            callback, params = httprules.jsonp_params(
                {k.encode(): [v.encode() for v in vs] for k, vs in query.items()}
            )
        except UnicodeError:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"query string is not UTF-8"]
        if callback is not None and not httprules.valid_callback(callback):
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"jsonp must be a JavaScript name"]
        if server.settings["auth"] is not None:
            info = _wsgi_info(environ, path, b"")
            info["fileName"], info["data"] = name, None
            if not call_auth(server, info):
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"Forbidden"]
        # Typed as a Deferred's result or the Deferred; it is the result.
        answer: Any = blockingCallFromThread(
            server._reactor,
            simulate,
            server,
            name,
            params,
            path,
            _wsgi_info(environ, path, b"")["headers"],
            {},
            False,
            False,
        )
        entries, headers = answer
        entry = entries[0]
        if "code" in entry:
            error = {k: v for k, v in entry.items() if k != "id"}
            payload = encode.dumps({"error": error}).encode()
        else:
            payload = encode.dumps(entry["data"]).encode()
        ctype = "application/javascript" if callback else "application/json"
        start_response(
            "200 OK",
            [("Content-Type", ctype)] + [h for h in headers if h[0] != "Content-Type"],
        )
        return [httprules.jsonp_body(callback, payload)]

    return app


def _wsgi_info(environ: Dict[str, Any], path: str, body: bytes) -> OriginalRequest:
    headers = {
        k[5:].replace("_", "-").title(): v
        for k, v in environ.items()
        if k[:5] == "HTTP_"
    }
    ip = environ.get("REMOTE_ADDR", "")
    return OriginalRequest(
        path=format_path(path),
        fileName="",
        headers=headers,
        cookies={},
        environ=environ,
        remote_addr=ip,
        method=environ.get("REQUEST_METHOD", ""),
        url=environ.get("PATH_INFO", ""),
        data=body,
        args=_query_args(environ.get("QUERY_STRING", "")),
        servedBy=(None, None, None),
        ip=ip,
    )
