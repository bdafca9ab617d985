"""
Which browser origins may open an Igor WebSocket or call the playground's
endpoints: one rule, used by both.

A browser's C{Origin} header is an RFC 6454 serialized origin:
C{scheme://host[:port]}, with no path (not even C{/}), no user name, the
scheme and host in lower case and the scheme's default port left out.  The
header is read as exactly that, compared case-insensitively and with an
explicit default port (C{:80} for http, C{:443} for https) dropped; a value
that is no origin -- empty, with a path or a trailing slash, a query, a user
name, a port that is not a number from 0 to 65535 -- is refused.

Always allowed: no C{Origin} header (a program, not a browser), C{null}
(case-insensitive: sandboxed pages, and files in some browsers),
C{file://...} (pages of files, as Electron sends), and C{http} or C{https} on C{localhost}, C{127.0.0.1} or
C{[::1]}, on any port.  The allow-list (the C{igor_allowed_origin} setting)
adds whole origins, written as a browser sends them or with a trailing
slash, any case, any default port; C{*} in it allows every origin (still
not a value that is no origin).

Pure Python, no Twisted.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence, Tuple

__all__ = ["normalize_origin", "origin_allowed", "parse_origin"]

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")
_HOST = re.compile(r"(?:[a-z0-9_~-]+(?:\.[a-z0-9_~-]+)*|\[[0-9a-f:.]+\])\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def parse_origin(value: str) -> Optional[Tuple[str, str, Optional[int]]]:
    """
    C{value} as C{(scheme, host, port)} when it is a serialized origin:
    scheme and host lower-cased, C{port} L{None} when absent or the
    scheme's default.  L{None} when it is not one.
    """
    scheme, sep, rest = value.lower().partition("://")
    if not sep or not _SCHEME.match(scheme) or not rest:
        return None
    host, port = rest, None
    if not rest.endswith("]") and ":" in rest:
        host, _, digits = rest.rpartition(":")
        if not _PORT.match(digits) or int(digits) > 65535:
            return None
        port = int(digits)
    if not _HOST.match(host):
        return None
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, host, port


def normalize_origin(value: str) -> Optional[str]:
    """
    The serialized form of origin C{value}, or L{None} when it is not one:
    C{"HTTPS://App.Example:443"} -> C{"https://app.example"}.
    """
    parsed = parse_origin(value)
    if parsed is None:
        return None
    scheme, host, port = parsed
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def _entry(entry: str) -> Optional[str]:
    """An allow-list entry, normalized (a trailing slash is tolerated there)."""
    entry = entry.strip()
    return (
        "*"
        if entry == "*"
        else normalize_origin(entry[:-1] if entry.endswith("/") else entry)
    )


def origin_allowed(origin: Optional[str], allowed: Sequence[str] = ()) -> bool:
    """
    Whether a request with this C{Origin} header is accepted (the rule of
    the module docstring).

    @param origin: the header's value, or L{None} when it is absent.
    @param allowed: the allow-list: origins, or C{"*"}.
    """
    if origin is None:
        return True
    if origin.lower() == "null" or origin.lower().startswith("file://"):
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    scheme, host, _ = parsed
    if scheme in ("http", "https") and host in _LOOPBACK:
        return True
    normalized = normalize_origin(origin)
    return any(_entry(entry) in ("*", normalized) for entry in allowed)
