"""
Drop-in replacement for C{izzati}'s backend::

    from twistbridge.izzati import Backend, file_return, background

C{Backend(callback, args=(), kwargs={}, background=False)} and its
C{run(host="0.0.0.0", port=5020)} behave as izzati's, served by twistbridge
(streaming uploads, limits, the callback in a thread pool) instead of Flask's
development server.  Files in C{data} have izzati's (Werkzeug's) C{.filename},
C{.read()}, C{.save(location)} plus C{.content_type}, C{.size} and C{.stream}.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from twistbridge.izzati._core import (
    file_return as file_return,
)
from twistbridge.izzati._core import (
    safe_filename as safe_filename,
)
from twistbridge.izzati._files import UploadedFile as UploadedFile

__all__ = [
    "Backend",
    "background",
]

#: The name the one-line start-up errors begin with.
PROGRAM = "izzati backend"


def _context() -> Any:
    """
    The multiprocessing context izzati used on Linux: C{fork}, so that the
    unguarded scripts of izzati programs (no C{if __name__ == "__main__"})
    keep working and callbacks need not pickle.  Elsewhere, the platform's default.
    """
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def background(
    target: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Optional[Dict[str, Any]] = None,
) -> Tuple[Any, Any]:
    """
    Run C{target(queue, *args, **kwargs)} in another process.

    @return: C{(process, queue)}: the started daemon process and the queue
        passed to C{target} as its first argument.
    """
    ctx = _context()
    queue = ctx.Queue()
    process = ctx.Process(
        target=target,
        args=(queue, *tuple(args)),
        kwargs=dict(kwargs or {}),
        daemon=True,
    )
    process.start()
    return process, queue


def _print_upload(text: Any, data: Any) -> Dict[str, str]:
    """izzati's default callback: print what came and answer success."""
    print(text, [f.filename for f in data])
    return {"result": "success"}


class Backend:
    """
    izzati's C{Backend}: serve C{callback(text, data, *args, **kwargs)} at
    C{POST /}.

    @ivar background: whether L{run} starts the server in another process.
    @ivar q: the queue given to the callback first when C{background} is
        true, else L{None}.
    @ivar max_upload_size: the request body limit (bytes, or with a K/M/G
        suffix; default 1 GiB).
    """

    def __init__(
        self,
        callback: Callable[..., Any] = _print_upload,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        background: bool = False,
        max_upload_size: Any = None,
        **settings: Any,
    ) -> None:
        self.callback = callback
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.background = background
        self.max_upload_size = max_upload_size
        self.settings = settings
        self.q = _context().Queue() if background else None

    def bridge(self, host: str = "0.0.0.0", port: Any = 5020) -> Any:
        """The L{twistbridge.Bridge} that serves this backend (HTTP only)."""
        from twistbridge.app import Bridge
        from twistbridge.endpoints import endpoint_description

        settings: Dict[str, Any] = {"igor_port": "none", "bgpy_port": "none"}
        settings.update(self.settings)
        settings["port"] = endpoint_description((host, port))
        if self.max_upload_size is not None:
            settings["max_upload_size"] = self.max_upload_size
        bridge = Bridge(**settings)
        args = self.args
        if self.background:
            args = (self.q, *args)
        bridge.izzati(self.callback, args=args, kwargs=self.kwargs)
        if self.background:
            assert bridge.izzati_registration is not None  # set just above
            bridge.izzati_registration.queue_first = True
        return bridge

    def run(
        self, host: str = "0.0.0.0", port: Any = 5020, use_reloader: bool = True
    ) -> Any:
        """
        Serve until the process is stopped; with C{background=True}, start the
        server in a daemon process and return C{(process, queue)}.  When the
        port cannot be bound, print one line saying why and exit with
        status 1 (in the server's process).

        C{use_reloader} is accepted for izzati compatibility and ignored.
        """
        if self.background:
            return self.run_background(host=host, port=port)
        self._serve(host, port)
        return None

    def run_background(
        self, host: str = "0.0.0.0", port: Any = 5020
    ) -> Tuple[Any, Any]:
        """Start the server in a daemon process; return C{(process, queue)}."""
        process = _context().Process(
            target=_serve_in_child, args=(self, host, port), daemon=True
        )
        process.start()
        return process, self.q

    def _serve(self, host: str, port: Any) -> None:
        from twisted.logger import textFileLogObserver

        from twistbridge._compatrun import run_standalone

        run_standalone(
            PROGRAM,
            lambda listener: f"{host}:{port}",
            self.bridge(host, port).service(),
            observers=[textFileLogObserver(sys.stderr)],
        )


def _serve_in_child(backend: Backend, host: str, port: Any) -> None:
    """Serve C{backend} in a forked child, on a reactor of its own."""
    _fresh_reactor()
    backend._serve(host, port)


def _fresh_reactor() -> None:
    """
    Install a new reactor in a forked child: the parent's (inherited through
    fork, possibly running) shares its epoll and wake-up descriptors.
    """
    import twisted.internet

    if "twisted.internet.reactor" in sys.modules:
        del sys.modules["twisted.internet.reactor"]
        if hasattr(twisted.internet, "reactor"):
            del twisted.internet.reactor
    from twisted.internet import default

    default.install()
