"""
The browser playground and bgpy's JSON HTTP bridge::

    GET  /                  the playground page (twistbridge/static/index.html)
    GET  /playground/<f>    its script, style sheet and icon (nothing else)
    GET  /bgpy/state        {"initialized": bool, "state": {...} | null}
    POST /bgpy/exec         JSON object = exec_args -> {"state": {...}}

Browsers cannot speak bgpy's TCP protocol, so C{/bgpy/} carries the two
calls the page needs over HTTP.  The checks (origin, token, content type,
size, JSON shape) are pure functions returning an L{HttpError} or a value;
the resources below them only do I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Dict, Optional, Union

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge.origins import origin_allowed
from twistbridge.request import Refusal

log = Logger()

#: The files of C{twistbridge/static/} that are served, with their types.
ASSETS: Dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: Headers of every playground file: nothing may load from another origin.
SECURITY_HEADERS: Dict[bytes, bytes] = {
    b"Content-Security-Policy": (
        b"default-src 'none'; script-src 'self'; style-src 'self'; "
        b"img-src 'self'; connect-src 'self'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}


# -- pure checks --------------------------------------------------------------


@dataclass(frozen=True)
class HttpError:
    """
    A refused request: the HTTP status and the message of its JSON body.

    @ivar code: the HTTP status code.
    @ivar message: one line saying what was wrong.
    """

    code: int
    message: str

    def body(self) -> Dict[str, Any]:
        """The JSON body: C{{"error": message}}."""
        return {"error": self.message}


def check_token(
    expected: Optional[str], authorization: Optional[str]
) -> Optional[HttpError]:
    """
    L{None} when no token is configured or C{authorization} is
    C{Bearer <token>} with the right token (compared in constant time);
    else a 401.
    """
    if not expected:
        return None
    given = ""
    if authorization and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    if hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return None
    return HttpError(
        http.UNAUTHORIZED, "bgpy token required (Authorization: Bearer <token>)"
    )


def parse_exec_args(
    content_type: Optional[str], body: bytes, limit: int
) -> Union[Dict[str, Any], HttpError]:
    """
    The exec_args of a C{POST /bgpy/exec}: a JSON object sent as
    C{application/json} (which a cross-site form cannot send), at most
    C{limit} bytes.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        return HttpError(
            http.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
        )
    if len(body) > limit:
        return HttpError(
            http.REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes"
        )
    try:
        args = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return HttpError(http.BAD_REQUEST, f"body is not JSON: {e}")
    if not isinstance(args, dict):
        return HttpError(http.BAD_REQUEST, "exec_args must be a JSON object")
    return args


def encode(body: Any) -> bytes:
    """JSON of C{body}; values JSON cannot hold (a task's own objects) as text."""
    return json.dumps(body, default=str).encode("utf-8")


# -- resources ----------------------------------------------------------------


def read_asset(name: str) -> bytes:
    """The bytes of C{twistbridge/static/<name>} as installed."""
    return (resources.files("twistbridge") / "static" / name).read_bytes()


class Asset(Resource):
    """One static file of the page, served from memory with L{SECURITY_HEADERS}."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: str) -> None:
        Resource.__init__(self)
        self.body = body
        self.content_type = content_type.encode("ascii")
        self.etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode("ascii") + b'"'

    def render_GET(self, request: Any) -> bytes:
        """The file, or 304 when the browser's copy is current (C{HEAD} too)."""
        request.setHeader(b"Content-Type", self.content_type)
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if request.setETag(self.etag) is http.CACHED:
            return b""
        return self.body


def build_page() -> Resource:
    """The page served at C{GET /}."""
    return Asset(read_asset("index.html"), ASSETS["index.html"])


class _Folder(Resource):
    """A fixed set of children; the folder itself and anything else: 404."""

    def __init__(self, missing: Callable[[], IResource] = pages.notFound) -> None:
        Resource.__init__(self)
        self._missing = missing

    def getChild(self, path: bytes, request: Any) -> IResource:
        """Not one of the children: 404."""
        return self._missing()

    def render(self, request: Any) -> Any:
        """The folder itself: 404 (no listing)."""
        return self._missing().render(request)


def build_assets() -> Resource:
    """C{/playground/}: the page's files, and no directory listing."""
    folder = _Folder()
    for name, content_type in ASSETS.items():
        folder.putChild(name.encode("ascii"), Asset(read_asset(name), content_type))
    return folder


def runtime_loader(get: Callable[[], Any]) -> Callable[[], Any]:
    """
    A function returning bgpy's task runtime (C{get()}), or L{None} when it
    cannot be built.
    """

    def load() -> Any:
        try:
            return get()
        except (Exception, SystemExit) as e:
            # Its own service start reports this (a bad token or init file);
            # a request must not end the server.
            log.warn("bgpy runtime unavailable: {error}", error=e)
            return None

    return load


class _JsonResource(Resource):
    """A leaf answering JSON, a JSON 405 for other methods, and the common checks."""

    isLeaf = True
    allowedMethods: tuple = ()

    def __init__(self, settings: Any, load_runtime: Callable[[], Any]) -> None:
        Resource.__init__(self)
        self._settings = settings
        self._load_runtime = load_runtime

    def render(self, request: Any) -> Any:
        """Dispatch on the method; C{405} with C{Allow} for the others."""
        if request.postpath:
            return _JsonNotFound().render(request)
        if request.method not in self.allowedMethods:
            request.setHeader(b"Allow", b", ".join(self.allowedMethods))
            return self.answer(
                request, HttpError(http.NOT_ALLOWED, "method not allowed")
            )
        return Resource.render(self, request)

    def answer(
        self, request: Any, error: Optional[HttpError], body: Any = None
    ) -> bytes:
        """Write C{error} (logged once) or a 200 C{body} as JSON."""
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        if error is not None:
            log.info(
                "bgpy HTTP {method} {path} refused: {code} {message}",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "replace"),
                code=error.code,
                message=error.message,
            )
            request.setResponseCode(error.code)
            return encode(error.body())
        request.setResponseCode(http.OK)
        return encode(body)

    def precheck(self, request: Any) -> Union[Any, HttpError]:
        """Origin, token, then the runtime: the runtime, or why not."""
        denied = self.credentials(request)
        if denied is not None:
            return denied
        rt = self._load_runtime()
        if rt is None:
            return HttpError(
                http.SERVICE_UNAVAILABLE, "bgpy is not available in this server"
            )
        return rt

    def credentials(self, request: Any) -> Optional[HttpError]:
        """Origin and token, from the headers alone: L{None}, or why not."""
        origin = request.getHeader(b"origin")
        extra = self._settings.igor_allowed_origin
        if not origin_allowed(
            None if origin is None else origin.decode("latin-1"), extra
        ):
            return HttpError(http.FORBIDDEN, "origin not allowed")
        try:
            expected = self._settings.token()
        except OSError as e:
            log.error("bgpy token file unreadable: {error}", error=e)
            return HttpError(http.SERVICE_UNAVAILABLE, "bgpy token file unreadable")
        authorization = request.getHeader(b"authorization")
        denied = check_token(
            expected, None if authorization is None else authorization.decode("latin-1")
        )
        if denied is not None:
            request.setHeader(b"WWW-Authenticate", _AUTHENTICATE)
            return denied
        return None


_AUTHENTICATE = b'Bearer realm="bgpy"'
#: The largest C{/bgpy/exec} body (a small JSON object), whatever
#: C{max_message_size} allows.
EXEC_BODY_LIMIT = 1024 * 1024


class _JsonNotFound(Resource):
    """A JSON 404 under C{/bgpy/}."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        """C{{"error": ...}} with 404, whatever the method."""
        request.setResponseCode(http.NOT_FOUND)
        request.setHeader(b"Content-Type", b"application/json")
        return encode({"error": "not found: /bgpy/ has state and exec"})


class BgpyState(_JsonResource):
    """C{GET /bgpy/state}: the state, or C{null} before INIT."""

    allowedMethods = (b"GET", b"HEAD")

    def render_GET(self, request: Any) -> bytes:
        """C{{"initialized": bool, "state": ...}}."""
        rt = self.precheck(request)
        if isinstance(rt, HttpError):
            return self.answer(request, rt)
        state = rt.state()
        return self.answer(
            request, None, {"initialized": state is not None, "state": state}
        )


class BgpyExec(_JsonResource):
    """C{POST /bgpy/exec}: run C{exec_task} with the body as exec_args."""

    allowedMethods = (b"POST",)

    def max_body_size(self, request: Any) -> int:
        """C{max_message_size}, at most L{EXEC_BODY_LIMIT}; no body but on C{POST}."""
        if request.method != b"POST":
            return 0
        return min(int(self._settings.max_message_size), EXEC_BODY_LIMIT)

    def check_request(self, request: Any) -> None:
        """
        Refuse a body from a client without the right origin or token
        before reading any of it (see L{twistbridge.request}).

        @raise twistbridge.request.Refusal: 403 or 401.
        """

        if request.method not in self.allowedMethods:
            return  # no body is accepted anyway (the method is answered 405)
        denied = self.credentials(request)
        if denied is not None:
            headers = [(b"WWW-Authenticate", _AUTHENTICATE)]
            if denied.code != http.UNAUTHORIZED:
                headers = []
            raise Refusal(denied.code, denied.message, headers)

    def render_POST(self, request: Any) -> Any:
        """C{{"state": new_state}}, once the task ran."""
        rt = self.precheck(request)
        if isinstance(rt, HttpError):
            return self.answer(request, rt)
        limit = self.max_body_size(request)
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return self.answer(
                request,
                HttpError(
                    http.REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes"
                ),
            )
        request.content.seek(0)
        args = parse_exec_args(
            (request.getHeader(b"content-type") or b"").decode("latin-1"),
            request.content.read(limit + 1),
            limit,
        )
        if isinstance(args, HttpError):
            return self.answer(request, args)
        if rt.state() is None:
            return self.answer(request, HttpError(http.CONFLICT, "Not initialized."))
        gone: list = []
        request.notifyFinish().addErrback(gone.append)

        def written(body: bytes) -> None:
            if not gone:
                request.write(body)
                request.finish()

        def failed(failure: Failure) -> None:
            log.failure("bgpy exec_task failed", failure)
            message = str(failure.value) or failure.type.__name__
            written(
                self.answer(request, HttpError(http.INTERNAL_SERVER_ERROR, message))
            )

        try:
            d = rt.execute(args)
        except Exception:
            failed(Failure())
            return NOT_DONE_YET
        d.addCallback(lambda state: self.answer(request, None, {"state": state}))
        d.addCallbacks(written, failed)
        return NOT_DONE_YET


def build_bgpy_resource(settings: Any, load_runtime: Callable[[], Any]) -> Resource:
    """C{/bgpy/}: C{state} and C{exec}, over the runtime C{load_runtime()}."""
    folder = _Folder(_JsonNotFound)
    folder.putChild(b"state", BgpyState(settings, load_runtime))
    folder.putChild(b"exec", BgpyExec(settings, load_runtime))
    return folder


def mount(root: Resource, settings: Any, get_runtime: Callable[[], Any]) -> None:
    """
    Put C{/playground/} and C{/bgpy/} on C{root}, leaving alone a path the
    app already uses (a JSON-RPC dispatcher at C{/bgpy}, say).  C{/bgpy/}
    uses the task runtime C{get_runtime()} (built on the first request).
    """
    for name, build in (
        (b"playground", build_assets),
        (b"bgpy", lambda: build_bgpy_resource(settings, runtime_loader(get_runtime))),
    ):
        if name in root.children:
            log.warn(
                "/{name} is taken by the app: the playground's is not mounted",
                name=name.decode("ascii"),
            )
            continue
        root.putChild(name, build())
