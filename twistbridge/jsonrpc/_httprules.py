"""
The HTTP-level decisions of JSON-RPC paths, as plain functions of header
values: which C{Content-Type} may carry a body (and which is a form), the
C{Access-Control-*} headers of CORS, whether to gzip an answer, the JSONP
callback and params of a query string, the arguments of a cookie a method
set (C{cookiesOut}), and the request's headers and cookies as text.  Pure:
no I/O, no Twisted; L{twistbridge.jsonrpc._http} applies them to requests.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# JSONP -----------------------------------------------------------------

_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[\d+\])*$")


def valid_callback(name: str) -> bool:
    """Whether C{name} is a safe JavaScript callback name for JSONP."""
    return len(name) <= 128 and _CALLBACK.match(name) is not None


def jsonp_params(
    args: Dict[bytes, List[bytes]],
) -> Tuple[Optional[str], Dict[str, Any]]:
    """
    The callback name and named params of a JSONP query string: a parameter
    given once is a string, given several times a list of strings.

    @raise ValueError: for bytes that are not UTF-8.
    """
    callback = None
    params: Dict[str, Any] = {}
    for raw_key, raw_values in args.items():
        key = raw_key.decode("utf-8")
        values = [v.decode("utf-8") for v in raw_values]
        if key == "jsonp":
            callback = values[-1]
            continue
        params[key] = values[0] if len(values) == 1 else values
    return callback, params


def jsonp_body(callback: Optional[str], payload: bytes) -> bytes:
    """C{callback(payload);} (flaskJSONRPCServer's JSONP form)."""
    if callback is None:
        return payload
    return callback.encode() + b"(" + payload + b");"


# CORS -----------------------------------------------------------------

CORS_ALLOW_HEADERS = "Origin, Authorization, X-Requested-With, Content-Type, Accept"


def cors_headers(cors: Any, origin: Optional[str]) -> List[Tuple[str, str]]:
    """
    The C{Access-Control-*} headers for option C{cors} and the request's
    C{Origin} (flaskJSONRPCServer's headers; a list of origins echoes the
    request's origin when it is listed).
    """
    if not cors:
        return []
    allow_origin = "*"
    methods = "GET, POST, OPTIONS"
    if isinstance(cors, dict):
        allowed = cors.get("origin", "*")
        methods = cors.get("methods", methods)
        if isinstance(methods, (list, tuple)):
            methods = ", ".join(methods)
        if isinstance(allowed, (list, tuple, set, frozenset)):
            if origin is None or origin not in allowed:
                return [("Vary", "Origin")]
            allow_origin = origin
        else:
            allow_origin = str(allowed)
    headers = [
        ("Access-Control-Allow-Origin", allow_origin),
        ("Access-Control-Allow-Methods", methods),
        ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
        ("Access-Control-Max-Age", "0"),
    ]
    if allow_origin != "*":
        headers.append(("Vary", "Origin"))
    return headers


# Content types and compression ------------------------------------------

_JSON_TYPES = frozenset(
    {
        "",
        "application/json",
        "application/json-rpc",
        "application/jsonrequest",
        "text/json",
        "text/plain",
    }
)


def acceptable_content_type(value: Optional[str], allow_form: bool = False) -> bool:
    """Whether a request's C{Content-Type} may carry a JSON-RPC body."""
    if value is None:
        return True
    mime = value.split(";", 1)[0].strip().lower()
    if mime in _JSON_TYPES or mime.endswith("+json"):
        return True
    return allow_form and mime == "application/x-www-form-urlencoded"


def accepts_gzip(accept_encoding: Optional[str]) -> bool:
    """Whether an C{Accept-Encoding} value allows gzip (and not C{q=0})."""
    if not accept_encoding:
        return False
    for part in accept_encoding.lower().split(","):
        token, _, params = part.strip().partition(";")
        if token.strip() in ("gzip", "*"):
            q = params.replace(" ", "")
            return q not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def should_compress(
    accept_encoding: Optional[str], length: int, min_size: Optional[int], forced: Any
) -> bool:
    """
    gzip when the client accepts it and either the body is at least
    C{min_size} bytes or a method set C{allowCompress = True}; a method that
    set C{allowCompress = False} turns it off.
    """
    if forced is False or not accepts_gzip(accept_encoding):
        return False
    if forced is True:
        return True
    return min_size is not None and length >= min_size


_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
_is_form: Dict[bytes, bool] = {}


def is_form_content_type(value: bytes) -> bool:
    """Whether a raw C{Content-Type} value names a form body (memoized)."""
    form = _is_form.get(value)
    if form is None:
        form = value.split(b";", 1)[0].strip().lower() in _FORM_TYPES
        if len(_is_form) < 256:
            _is_form[value] = form
    return form


#: The verdicts of L{acceptable_raw_content_type} so far, by C{(value,
#: allow_form)}: the request path reads it first, to skip the call.
content_type_verdicts: Dict[Tuple[bytes, bool], bool] = {}


def acceptable_raw_content_type(value: bytes, allow_form: bool) -> bool:
    """L{acceptable_content_type} for a raw header, memoized."""
    key = (value, allow_form)
    ok = content_type_verdicts.get(key)
    if ok is None:
        ok = acceptable_content_type(value.decode("latin-1"), allow_form)
        if len(content_type_verdicts) < 256:
            content_type_verdicts[key] = ok
    return ok


# Cookies and headers -------------------------------------------------------

_COOKIE_ARGUMENTS = (
    ("expires", "expires"),
    ("domain", "domain"),
    ("max_age", "max_age"),
    ("maxAge", "max_age"),
    ("comment", "comment"),
    ("secure", "secure"),
    ("httponly", "httpOnly"),
    ("httpOnly", "httpOnly"),
    ("samesite", "sameSite"),
    ("sameSite", "sameSite"),
)


def cookie_arguments(cookie: Any) -> Optional[Dict[str, Any]]:
    """
    The keyword arguments of C{Request.addCookie} for one C{cookiesOut}
    entry (a dict with C{name}, C{value} and optional attributes, in
    flaskJSONRPCServer's spellings or Twisted's), C{path} defaulting to
    C{"/"}; L{None} for an entry without a name and a value.
    """
    if not isinstance(cookie, dict) or "name" not in cookie or "value" not in cookie:
        return None
    kwargs: Dict[str, Any] = {"path": cookie.get("path", "/")}
    for key, arg in _COOKIE_ARGUMENTS:
        if cookie.get(key) is not None:
            kwargs[arg] = cookie[key]
    return kwargs


def decode_headers(raw: Iterable[Tuple[bytes, Sequence[bytes]]]) -> Dict[str, str]:
    """Request headers as text (C{_connection.headers}): repeated ones joined."""
    return {k.decode("latin-1"): b", ".join(v).decode("latin-1") for k, v in raw}


def decode_cookies(raw: Optional[Mapping[bytes, bytes]]) -> Dict[str, str]:
    """Request cookies as text (C{_connection.cookies})."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in (raw or {}).items()}
