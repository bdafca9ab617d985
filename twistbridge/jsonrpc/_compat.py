"""
The parts of flaskJSONRPCServer's behaviour that are not plain JSON-RPC:
its C{auth} callback (once per HTTP request, before anything else), the
request dict its callbacks get, the computed entries of C{_connection}
(C{call}, C{dispatcher}, C{request}...), C{simulateRequest}, and a WSGI
app of the server (C{getWSGI}).

The server class itself is L{twistbridge.jsonrpc.JSONRPCServer}; this
module only holds what it delegates.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import sys
import threading
import time
from http.cookies import SimpleCookie
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.app import normalize_path
from twistbridge.jsonrpc import _core as core

__all__ = [
    "OriginalRequest",
    "auth_form",
    "call_auth",
    "connection_extra",
    "format_path",
    "request_info",
    "simulate",
    "wsgi_app",
]

log = Logger()


class OriginalRequest(dict):
    """
    flaskJSONRPCServer's C{request} dict (C{path}, C{headers}, C{cookies},
    C{environ}, C{ip}, C{data}...), readable as keys or as attributes
    (older programs write C{request.headers}).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def format_path(path: str) -> str:
    """flaskJSONRPCServer's form of a path: C{"/api/"} (leading and trailing slash)."""
    path = normalize_path(path)
    return path if path == "/" else path + "/"


def _query_args(query: str) -> Dict[str, str]:
    args: Dict[str, str] = {}
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            args[name] = value
    return args


def request_info(request: Any, rpc_path: Optional[str] = None) -> OriginalRequest:
    """
    The request dict flaskJSONRPCServer gives C{auth} and postprocessers,
    built from a Twisted request.  C{rpc_path} is the JSON-RPC path the
    request goes to (for C{GET <path>/<method>}, the path without the
    method, which is then C{fileName}).
    """
    uri = request.uri.decode("latin-1")
    raw_path, _, query = uri.partition("?")
    path_info = unquote(raw_path)
    try:
        ip = str(request.getClientAddress().host)
    except Exception:
        ip = ""
    content = getattr(getattr(request, "body_consumer", None), "content", None)
    if content is None:
        content = request.content
    body = content.getvalue() if hasattr(content, "getvalue") else b""
    method = request.method.decode("latin-1")
    ctype = request.getHeader(b"content-type")
    host = request.getRequestHostname().decode("latin-1")
    port = getattr(request.getHost(), "port", "")
    scheme = "https" if request.isSecure() else "http"
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": ctype.decode("latin-1") if ctype else "",
        "REMOTE_ADDR": ip,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": request.clientproto.decode("latin-1"),
        "wsgi.url_scheme": scheme,
        "wsgi.version": (1, 0),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, values in request.requestHeaders.getAllRawHeaders():
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ["HTTP_" + key] = ", ".join(v.decode("latin-1") for v in values)
    headers = {
        k[5:].replace("_", "-").title(): v
        for k, v in environ.items()
        if k[:5] == "HTTP_"
    }
    cookies = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in (request.received_cookies or {}).items()
    }
    file_name = ""
    path = format_path(path_info)
    if rpc_path is not None and method == "GET":
        path = format_path(rpc_path)
        file_name = path_info.rstrip("/").rsplit("/", 1)[-1]
    host_header = request.getHeader(b"host")
    authority = host_header.decode("latin-1") if host_header else f"{host}:{port}"
    return OriginalRequest(
        path=path,
        fileName=file_name,
        headers=headers,
        cookies=cookies,
        environ=environ,
        remote_addr=ip,
        method=method,
        url=f"{scheme}://{authority}{uri}",
        data=body if method == "POST" else None,
        dataPrint=None,
        dataParsed=None,
        dataStatus=None,
        args=_query_args(query),
        form={},
        servedBy=(False, host, port),
        ip=ip,
    )


# auth -------------------------------------------------------------------------


def auth_form(auth: Callable[..., Any]) -> int:
    """
    How many arguments C{auth} takes: 2 for flaskJSONRPCServer 0.9's
    C{auth(server, request)}, 4 for the older C{auth(server, path,
    request, jsonpMethod)} its C{example/auth.py} is written for.
    """
    try:
        params = list(inspect.signature(auth).parameters.values())
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    required = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    return 4 if len(required) >= 4 else 2


def call_auth(server: Any, info: OriginalRequest) -> bool:
    """
    Ask the server's C{auth} about one HTTP request (any thread): C{True}
    only when it returns C{True} itself, as flaskJSONRPCServer decides.
    """
    auth = server.settings["auth"]
    if auth_form(auth) == 4:
        method = info["fileName"] or None
        return auth(server, info["path"], info, method) is True
    return auth(server, info) is True


_ALLOWED_METHODS = (b"GET", b"POST", b"OPTIONS", b"HEAD")


def _route(server: Any, resource: Any, request: Any) -> Any:
    """
    Where flaskJSONRPCServer would send this request: the JSON-RPC path
    (a str), C{(code, text)} for its plain 404/405 answers, or L{None}
    for a resource that is not JSON-RPC's.
    """
    from twistbridge.jsonrpc._resource import JsonpResource, RpcResource

    ctl = server.rpc

    def known(path: str) -> bool:
        disp = ctl.dispatcher(path)
        return disp is not None and bool(disp.methods)

    if isinstance(resource, RpcResource):
        rpc_path = resource.path
        deeper = False
        parent = rpc_path.rsplit("/", 1)[0] or "/"
    elif isinstance(resource, JsonpResource):
        rpc_path = resource.parent.path
        deeper = bool(request.postpath)
        parent = rpc_path
        if request.method not in (b"GET", b"HEAD"):
            # POST /api/echo: no such path, but its previous level is known.
            if not deeper and known(parent):
                return (
                    404,
                    f"Not found, but known previous level: {format_path(parent)}",
                )
            return 404, "Not found"
    else:
        return None
    if request.method not in _ALLOWED_METHODS:
        return None  # the resource's 405, before auth as in flaskJSONRPCServer
    if deeper or not known(rpc_path):
        if (
            request.method != b"GET"
            and isinstance(resource, RpcResource)
            and rpc_path != "/"
            and known(parent)
        ):
            return 404, f"Not found, but known previous level: {format_path(parent)}"
        return 404, "Not found"
    return rpc_path


def compat_request(server: Any, base: type) -> type:
    """
    The request class of a compatibility server: unknown paths answer as
    flaskJSONRPCServer's do (C{404 Not found}), and the server's C{auth}
    decides about every request to a known path before it is processed
    (C{403 Forbidden} unless it returns C{True}).
    """

    class CompatRequest(base):  # type: ignore[valid-type, misc]
        default_body_limit = server.bridge.settings.max_request_size

        def _plain(self, code: int, text: str) -> None:
            self.setResponseCode(code)
            body = text.encode("utf-8")
            self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            self.setHeader(b"Content-Length", str(len(body)).encode())
            self.write(body)
            self.finish()

        def render(self, resrc: Any) -> None:
            route = _route(server, resrc, self)
            if route is None:
                return base.render(self, resrc)
            if isinstance(route, tuple):
                return self._plain(*route)
            if server.settings["auth"] is None:
                return base.render(self, resrc)
            info = request_info(self, route)
            d = server.bridge.offloader.in_thread(call_auth, server, info)

            def decided(allowed: bool) -> None:
                if self.finished or getattr(self, "_disconnected", False):
                    return
                if not allowed:
                    log.info(
                        "flaskJSONRPCServer: auth refused {method} {path} from {ip}",
                        method=info["method"],
                        path=info["path"],
                        ip=info["ip"],
                    )
                    return self._plain(403, "Forbidden")
                try:
                    base.render(self, resrc)
                except Exception:
                    self.processingFailed(Failure())

            def raised(failure: Failure) -> None:
                log.failure(
                    "flaskJSONRPCServer: the auth function raised; the request "
                    "is refused (500)",
                    failure,
                )
                if not (self.finished or getattr(self, "_disconnected", False)):
                    self._plain(500, "Internal Server Error")

            d.addCallbacks(decided, raised)
            return None

    return CompatRequest


# _connection ------------------------------------------------------------------


class _Calls(dict):
    """C{_connection.call}: the server's helpers, readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"_connection.call has no {name!r}: it offers "
                f"{', '.join(sorted(self))} (eval, execute and copyGlobal "
                "belong to flaskJSONRPCServer's process backends: a method "
                "running in a thread reads and changes the program's globals "
                "directly)"
            ) from None


def sleep(seconds: float) -> Any:
    """
    Sleep: in a worker thread, C{time.sleep}; in the reactor thread
    (C{async def} methods, C{run_in="reactor"}) a L{Deferred} to await,
    so that the reactor never blocks.
    """
    if threadable.isInIOThread():
        from twisted.internet import reactor

        return task.deferLater(reactor, seconds, lambda: None)
    time.sleep(seconds)
    return None


def _dispatcher_of(server: Any, conn: Any) -> Any:
    disp = server.rpc.dispatcher(conn["path"])
    method = disp.methods.get(conn["method"]) if disp is not None else None
    return method.handler.func if method is not None else None


def connection_extra(server: Any, conn: Any, name: str) -> Any:
    """
    The computed entries of flaskJSONRPCServer's C{_connection}.

    @raise KeyError: for a name it did not have either.
    """
    if name == "call":
        this = _dispatcher_of(server, conn)
        return _Calls(
            lockThis=lambda: server.lock(this),
            unlockThis=lambda exclusive=False: server.unlock(this, exclusive),
            waitThis=lambda returnStatus=False: server.wait(
                this, returnStatus=returnStatus
            ),
            lock=server.lock,
            unlock=server.unlock,
            wait=lambda dispatcher=None, returnStatus=False: server.wait(
                dispatcher, returnStatus=returnStatus
            ),
            sleep=sleep,
            log=server._logger,
        )
    if name == "dispatcher":
        return _dispatcher_of(server, conn)
    if name == "dispatcherName":
        return conn["method"]
    if name == "request":
        call = dict.get(conn, "_call")
        return {
            "jsonrpc": "2.0",
            "method": conn["method"],
            "params": None if call is None else call.params,
            "id": None if call is None or call.notification else call.id,
        }
    if name == "serverName":
        return server.name
    if name == "uniqueId":
        return f"{conn['method']}--{id(conn):x}--{time.time():.6f}"
    if name == "mimeType":
        return "text/javascript" if conn["jsonp"] is not False else "application/json"
    if name == "nativeThread":
        return not threadable.isInIOThread()
    if name == "servedBy":
        return (False, None, None)
    if name == "execBackendId":
        return "simple"
    if name == "execBackend":
        return None
    raise KeyError(name)


# simulateRequest ----------------------------------------------------------------


def _headers_out(opts: Any, conn: Any) -> List[Tuple[str, str]]:
    headers: List[Tuple[str, str]] = [("Content-Type", "application/json")]
    if opts.cors:
        headers += core.cors_headers(opts.cors, None)
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
    from twistbridge.jsonrpc import MainError

    ctl = server.rpc
    disp = ctl.dispatcher(normalize_path(path))
    if disp is None or not disp.methods:
        return defer.fail(MainError(f"404 Not Found: no methods at {path}"))
    params = args if args is not None else []
    call = core.Call(name, params, None if notify else 1, notify)
    conn = core.new_connection(
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


# getWSGI --------------------------------------------------------------------------


def wsgi_app(server: Any) -> Callable[..., Any]:
    """
    A WSGI app answering JSON-RPC POSTs (single calls and batches) to the
    server's paths, for a WSGI server in another thread: each request
    blocks its WSGI thread while the calls run on twistbridge's reactor.
    """
    from twisted.internet.threads import blockingCallFromThread

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = normalize_path(environ.get("PATH_INFO", "/"))
        disp = server.rpc.dispatcher(path)
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
        parsed = core.parse(body, disp.options.max_batch_size)
        if type(parsed) is core.Error:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [core.encode_error(parsed)]
        if server.settings["auth"] is not None:
            info = _wsgi_info(environ, path, body)
            if not call_auth(server, info):
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"Forbidden"]
        parts: List[Optional[bytes]] = []
        headers: List[Tuple[str, str]] = []
        for item in parsed.items:
            if type(item) is core.Invalid:
                parts.append(core.encode_error(item.error, item.id, item.version))
                continue
            entries, headers = blockingCallFromThread(
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
            if item.notification:
                parts.append(None)
            elif "code" not in entries[0]:
                parts.append(core.encode_result(item, entries[0]["data"]))
            else:
                error = core.Error(
                    entries[0]["code"], entries[0]["message"], entries[0].get("data")
                )
                parts.append(core.encode_error(error, item.id, item.version))
        payload = core.join(parts, parsed.batch)
        if payload is None:
            start_response("204 No Content", [])
            return [b""]
        if not headers:
            headers = [("Content-Type", "application/json")]
        start_response("200 OK", headers)
        return [payload]

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


# private helpers the original's examples call ------------------------------------


def script_path(full: bool = False, real: bool = True, f: Optional[str] = None) -> str:
    """The main program's directory (C{full}: its file), as flaskJSONRPCServer's."""
    f = f or sys.argv[0]
    path = os.path.realpath(f) if real else f
    return path if full else os.path.dirname(os.path.realpath(f) if real else f)


def getms(inMS: bool = True) -> float:
    """The time now, in milliseconds (C{inMS=False}: seconds)."""
    return time.time() * 1000.0 if inMS else time.time()


_PREFIXES = ("", "ERROR:", "WARNING:", "INFO:", "DEBUG:")
_lock = threading.Lock()


def logger(server: Any, level: Any, *args: Any) -> None:
    """
    flaskJSONRPCServer's C{_logger(level, *args)}: the arguments joined by
    spaces, prefixed by the level's name (1 error ... 4 debug); a first
    argument that is not a number is part of the message, always shown.
    Goes to Twisted's log.
    """
    if isinstance(level, bool) or not isinstance(level, int):
        args, level = (level, *args), None
    wanted = server.settings["log"]
    if level:
        if not wanted:
            return
        if wanted is not True and level > wanted:
            return
    parts = []
    for arg in args:
        if isinstance(arg, str):
            parts.append(arg)
        else:
            try:
                parts.append(json.dumps(arg, default=str))
            except (TypeError, ValueError):
                parts.append(repr(arg))
    text = " ".join(parts)
    prefix = _PREFIXES[level] if level and level < len(_PREFIXES) else ""
    if prefix and not text.startswith(prefix):
        text = f"{prefix} {text}"
    emit = {1: log.error, 2: log.warn, 4: log.debug}.get(level or 0, log.info)
    emit("{text}", text=text)
