"""
Igor's file server: the files under one directory over plain HTTP, on a
port of its own, for the pictures and media an Igor client shows.

As in Igor, C{GET /<path>} serves C{<root>/<path>}, a path that repeats the
root directory itself (C{GET /home/me/media/a.png} with root
C{/home/me/media}) serves the same file, and a directory without an
C{index.html} is listed.  Unlike Igor it is read-only, never serves
anything outside the root (no C{..}, no symbolic link leading out, no
absolute path elsewhere), binds the loopback interface unless told
otherwise, and applies the WebSocket's origin rules to browsers.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web import resource, static
from twisted.web.server import Site

from twistbridge.origins import origin_allowed

__all__ = ["FileServerResource", "build_file_site"]

log = Logger()

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_INDEX_NAMES = ("index.html", "index.htm")
_READ_METHODS = (b"GET", b"HEAD")


def _host_name(host: bytes) -> str:
    """The name part of a C{Host} header (C{[::1]:8080} -> C{[::1]})."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text.split("]", 1)[0] + "]"
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class FileServerResource(resource.Resource):
    """
    The whole file server: one leaf resource that maps the request path to
    a file under C{root} itself, then lets L{static.File} send it.

    @ivar root: the real path (symbolic links resolved) of the directory
        served.
    @ivar allowed_origins: extra browser origins allowed besides the
        defaults of L{origin_allowed}.
    @ivar allowed_hosts: the C{Host} names accepted, or L{None} for any.
    """

    isLeaf = True

    def __init__(
        self,
        root: str,
        allowed_origins: Sequence[str] = (),
        allowed_hosts: Optional[Iterable[str]] = None,
    ) -> None:
        resource.Resource.__init__(self)
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"file server root {root!r} is not a directory")
        self.allowed_origins = tuple(allowed_origins)
        self.allowed_hosts = (
            None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        )

    # checks ------------------------------------------------------------------

    def _refuse(self, request: Any, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return message.encode("utf-8") + b"\n"

    def _locate(self, request: Any) -> Any:
        """The real path for the request, or C{(code, message)} to refuse."""
        raw = request.path
        if b"\\" in raw:
            return 404, "Not found"
        path = unquote_to_bytes(raw)
        if b"\x00" in path:
            return 400, "Bad path: it contains a NUL byte"
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "Bad path: it is not UTF-8"
        root_prefix = self.root.rstrip("/") + "/"
        if text.startswith(root_prefix) or text == self.root:
            text = text[len(self.root) :]
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return 404, "Not found"
        candidate = os.path.realpath(os.path.join(self.root, *parts))
        if candidate != self.root and not candidate.startswith(root_prefix):
            return 404, "Not found"
        if not os.path.exists(candidate):
            return 404, "Not found"
        return candidate

    def _origin_ok(self, request: Any) -> bool:
        origin = request.getHeader(b"origin")
        if origin is None:
            return True
        if not origin_allowed(origin.decode("latin-1"), self.allowed_origins):
            return False
        request.setHeader(b"access-control-allow-origin", origin)
        request.setHeader(b"vary", b"Origin")
        return True

    # rendering ------------------------------------------------------------------

    def render(self, request: Any) -> Any:
        """Check the request, then serve the file or directory it names."""
        host = request.getHeader(b"host")
        if self.allowed_hosts is not None and (
            host is None or _host_name(host) not in self.allowed_hosts
        ):
            log.info("igor file server: refused Host {host!r}", host=host)
            return self._refuse(request, 421, "Host not allowed")
        if not self._origin_ok(request):
            log.info(
                "igor file server: refused Origin {origin!r}",
                origin=request.getHeader(b"origin"),
            )
            return self._refuse(request, 403, "Origin not allowed")
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"allow", b"GET, HEAD, OPTIONS")
            request.setHeader(b"access-control-allow-methods", b"GET, HEAD, OPTIONS")
            return b""
        if request.method not in _READ_METHODS:
            request.setHeader(b"allow", b"GET, HEAD, OPTIONS")
            return self._refuse(request, 405, "The file server is read-only: use GET")
        found = self._locate(request)
        if isinstance(found, tuple):
            return self._refuse(request, *found)
        if os.path.isdir(found):
            return self._render_directory(request, found)
        return static.File(found).render(request)

    def _render_directory(self, request: Any, path: str) -> Any:
        if not request.path.endswith(b"/"):
            request.setResponseCode(301)
            request.setHeader(b"location", request.path + b"/")
            return b""
        for name in _INDEX_NAMES:
            index = os.path.join(path, name)
            if os.path.isfile(index) and os.path.realpath(index).startswith(
                self.root.rstrip("/") + "/"
            ):
                return static.File(os.path.realpath(index)).render(request)
        return static.DirectoryLister(path).render(request)


def _allowed_hosts(host: str, extra: Sequence[str]) -> Optional[set]:
    """The C{Host} names to accept on a listener bound to C{host}."""
    if host in ("", "0.0.0.0", "::"):
        return None
    names = set(_LOOPBACK_HOSTS) | {h.lower() for h in extra}
    names.add(host.lower())
    if ":" in host:
        names.add(f"[{host.lower()}]")
    return names


def build_file_site(
    root: str,
    host: str,
    allowed_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    timeout: float = 60,
) -> Site:
    """The L{Site} of the file server for C{root}, listening on C{host}."""
    site = Site(
        FileServerResource(root, allowed_origins, _allowed_hosts(host, allowed_hosts))
    )
    site.timeOut = timeout
    site.displayTracebacks = False
    return site
