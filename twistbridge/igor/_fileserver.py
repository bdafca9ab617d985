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

Files are opened one path component at a time from the root's descriptor,
each with C{O_NOFOLLOW}: what is sent is what was opened, so a symbolic
link swapped in after the path was checked cannot lead out of the root.  A
link met on the way is resolved and followed only when it stays inside.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, Iterable, List, Optional, Sequence, Union
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
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
#: How many symbolic links one request may pass through (as the kernel's 40).
_MAX_LINKS = 40


class _Outside(Exception):
    """The path leads out of the root (or through too many links)."""


def open_under(root: str, parts: List[str]) -> int:
    """
    Open C{root/<parts>} read-only without ever leaving C{root}, and
    return the descriptor.

    Each component is opened relative to the descriptor of the one before,
    with C{O_NOFOLLOW}, so nothing on the way can be a link followed
    blindly.  A link that is met is resolved; when its target is inside
    C{root} the walk starts again from the root along the resolved path.

    @raise _Outside: when a link leads out of C{root}.
    @raise OSError: when a component is missing or unreadable.
    """
    root_prefix = root.rstrip("/") + "/"
    for _ in range(_MAX_LINKS):
        fd = os.open(root, _O_DIR)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                try:
                    new = os.open(part, _O_FILE if last else _O_DIR, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    if not stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                        raise
                    target = os.path.realpath(os.path.join(root, *parts[: i + 1]))
                    if target != root and not target.startswith(root_prefix):
                        raise _Outside(target) from None
                    rest = target[len(root) :].split("/") + parts[i + 1 :]
                    parts = [p for p in rest if p]
                    break
                os.close(fd)
                fd = new
            else:
                result, fd = fd, -1
                return result
        finally:
            if fd >= 0:
                os.close(fd)
    raise _Outside("too many symbolic links")


class _OpenedFile(static.File):
    """A L{static.File} that sends an already opened descriptor."""

    def __init__(self, path: str, fd: int) -> None:
        static.File.__init__(self, path)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._opened = False

    def getFileSize(self) -> int:
        """The size of the opened file (not of whatever the path names now)."""
        return self._size

    def render(self, request: Any) -> Any:
        """Send the file; the descriptor is closed if it was not needed."""
        try:
            return static.File.render(self, request)
        finally:
            if not self._opened:
                os.close(self._fd)

    def openForReading(self) -> Any:
        """The opened descriptor, as a file."""
        self._opened = True
        return os.fdopen(self._fd, "rb")


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

    def _locate(self, request: Any) -> Union[tuple, Any]:
        """
        C{(path, descriptor)} of what the request names, opened (see
        L{open_under}), or C{(code, message)} to refuse.
        """
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
        try:
            fd = open_under(self.root, parts)
        except _Outside as e:
            log.info(
                "igor file server: refused {path!r}: leads to {to}", path=raw, to=e
            )
            return 404, "Not found"
        except OSError:
            return 404, "Not found"
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            os.close(fd)
            return 404, "Not found"
        return os.path.join(self.root, *parts), fd

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
        if isinstance(found[0], int):
            return self._refuse(request, *found)
        path, fd = found
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            try:
                return self._render_directory(request, path, fd)
            finally:
                os.close(fd)
        return _OpenedFile(path, fd).render(request)

    def _render_directory(self, request: Any, path: str, fd: int) -> Any:
        if not request.path.endswith(b"/"):
            request.setResponseCode(301)
            request.setHeader(b"location", request.path + b"/")
            return b""
        relative = [p for p in path[len(self.root) :].split("/") if p]
        for name in _INDEX_NAMES:
            try:
                index = open_under(self.root, relative + [name])
            except (OSError, _Outside):
                continue
            if stat.S_ISREG(os.fstat(index).st_mode):
                return _OpenedFile(os.path.join(path, name), index).render(request)
            os.close(index)
        return static.DirectoryLister(path, dirs=sorted(os.listdir(fd))).render(request)


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
