"""
flaskJSONRPCServer's HTTP behaviour around JSON-RPC: the request dict its
callbacks get, its C{auth} callback (once per HTTP request, before anything
else) and its plain 404s, in the request class of the compatibility server.

The server class itself is L{twistbridge.jsonrpc.JSONRPCServer};
L{twistbridge.jsonrpc._magic} computes its C{_connection} entries and
L{twistbridge.jsonrpc._simulate} runs C{simulateRequest} and C{getWSGI}.
"""

from __future__ import annotations

import functools
import inspect
import io
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Type
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.python.failure import Failure

from twistbridge.errors import Busy
from twistbridge.jsonrpc._dispatch import AttrDict
from twistbridge.jsonrpc._registry import normalize_path
from twistbridge.jsonrpc._worker import MainError as MainError
from twistbridge.offload import OffloadError

if TYPE_CHECKING:
    from twistbridge.request import BridgeRequest


__all__ = [
    "MainError",
    "OriginalRequest",
    "auth_form",
    "call_auth",
    "compat_request",
    "format_path",
    "request_info",
]

log = Logger()


class OriginalRequest(AttrDict):
    """
    flaskJSONRPCServer's C{request} dict (C{path}, C{headers}, C{cookies},
    C{environ}, C{ip}, C{data}...), readable as keys or as attributes
    (older programs write C{request.headers}).
    """


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
        return _auth_form(auth)
    except TypeError:  # not hashable: not cached
        return _auth_form.__wrapped__(auth)


@functools.lru_cache(maxsize=64)
def _auth_form(auth: Callable[..., Any]) -> int:
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


def compat_request(server: Any, base: Type[BridgeRequest]) -> Type[BridgeRequest]:
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
                gone = self.finished or getattr(self, "_disconnected", False)
                if failure.check(Busy, OffloadError):
                    log.warn(
                        "flaskJSONRPCServer: no thread free to ask auth: {why}",
                        why=failure.getErrorMessage(),
                    )
                    if not gone:
                        self._plain(503, "Server busy, try again")
                    return
                log.failure(
                    "flaskJSONRPCServer: the auth function raised; the request "
                    "is refused (500)",
                    failure,
                )
                if not gone:
                    self._plain(500, "Internal Server Error")

            d.addCallbacks(decided, raised)
            return None

    return CompatRequest
