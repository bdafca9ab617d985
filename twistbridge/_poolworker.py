"""
The worker process of the process pool (L{twistbridge._processpool}).

The pool runs this file on its own (without importing the twistbridge
package); it imports no Twisted and runs no reactor: it reads one call at a
time from file descriptor 3 and writes the answer to file descriptor 4, each
as one frame::

    8 bytes big-endian length | pickle

    request:  (func, args, kwargs)
    answer:   ("ok", result)
              ("raise", exception, traceback_text)
              ("remote", type_name, message, traceback_text)   exception
                                                              that cannot travel
              ("unpicklable", what, reason)                    could not pickle
              ("undecodable", reason, traceback_text)          request would
                                                              not unpickle here

Before the first call it writes one empty frame: "ready".  End of input on
descriptor 3 means "stop": the worker exits with status 0.

While a call runs, the call may ask the main process for something
(L{upcall}): it writes a frame whose length has the top bit
(L{UPCALL_BIT}) set, holding C{name NUL body}, and reads the answer from
descriptor 3, a frame with the same bit set holding C{b"+" result} or
C{b"-" error message}.  The parent sends a worker no other frame while its
call runs, so the answer is the next frame there.  The channel is these two
inherited pipes: only the workers the pool started hold them.  One upcall
is at most C{TWISTBRIDGE_WORKER_UPCALL_MAX} bytes (the parent kills a
worker that announces more).

The parent decides the worker's life: SIGINT and SIGTERM are ignored (the
parent kills a worker with SIGKILL when it must), and on Linux the worker
asks the kernel for SIGKILL if the parent dies, so no worker outlives it.
"""

from __future__ import annotations

import inspect
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from typing import Any, BinaryIO, Callable, List, Optional

HEADER = struct.Struct(">Q")
REQUEST_FD = 3
ANSWER_FD = 4
SYS_PATH_ENV = "TWISTBRIDGE_WORKER_SYS_PATH"
MAIN_ENV = "TWISTBRIDGE_WORKER_MAIN"
PARENT_ENV = "TWISTBRIDGE_WORKER_PARENT"
UPCALL_MAX_ENV = "TWISTBRIDGE_WORKER_UPCALL_MAX"
#: The top bit of a frame's length: the frame is an upcall or its answer.
UPCALL_BIT = 1 << 63
#: The default bound of one upcall and of its answer.
UPCALL_MAX = 64 * 1024 * 1024


class UpcallError(Exception):
    """
    An upcall failed: the main process answered an error (its message is
    this one's), did not answer in time, or there is no call running in a
    worker process to make it from.
    """


def _die_with_parent() -> None:
    """On Linux, get SIGKILL when the parent process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except Exception:  # pragma: no cover - best effort
        return


def _read_exact(stream: BinaryIO, n: int) -> Optional[bytes]:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def _setup_paths() -> None:
    """Use the parent's C{sys.path}, so handlers pickled by reference import."""
    paths = os.environ.get(SYS_PATH_ENV)
    if paths:
        for path in reversed(paths.split(os.pathsep)):
            if path not in sys.path:
                sys.path.insert(0, path)


_main_loaded = False


def _load_main() -> None:
    """
    Import the parent's C{__main__} module as C{__mp_main__} (as
    multiprocessing does; its C{if __name__ == "__main__":} block does not
    run), the first time a call names something of C{__main__}.
    """
    global _main_loaded
    if _main_loaded:
        return
    _main_loaded = True
    main = os.environ.get(MAIN_ENV)
    if not main:
        return
    import runpy
    import types

    kind, _, target = main.partition(":")
    if kind == "module":
        namespace = runpy.run_module(target, run_name="__mp_main__", alter_sys=False)
    else:
        namespace = runpy.run_path(target, run_name="__mp_main__")
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__mp_main__"] = module


class Snapshot(dict):
    """
    The copy of a JSON-RPC method's C{_connection} that a worker process
    gets (C{ip}, C{headers}, C{cookies}, C{path}, C{method}...): keys
    readable as attributes, as in the main process.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"_connection has no {name!r} in a worker process: it is a copy "
                f"({', '.join(sorted(self))}); the server, call.* and the main "
                "program's state stay in the main process"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class _Unpickler(pickle.Unpickler):
    """Finds the parent's C{__main__} names in its main module."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "twistbridge._poolworker" and name == "Snapshot":
            return Snapshot  # without importing the twistbridge package
        if module == "__main__":
            _load_main()
            if "__mp_main__" in sys.modules:
                module = "__mp_main__"
        return super().find_class(module, name)


def loads(data: bytes) -> Any:
    """Unpickle a request."""
    import io

    return _Unpickler(io.BytesIO(data)).load()


def _describe_unpicklable(value: Any) -> str:
    """Find the first part of C{value} that does not pickle, by path."""
    try:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    else:
        return repr_short(value)
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
            except Exception:
                return f"[{key!r}] = {_describe_unpicklable(item)}"
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            try:
                pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
            except Exception:
                return f"[{index}] = {_describe_unpicklable(item)}"
    return repr_short(value)


def repr_short(value: Any, limit: int = 120) -> str:
    """C{repr(value)}, cut to C{limit} characters."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_LATER = (
    "{name} returned a {kind}, but a run_in='process' handler runs in a worker "
    "process, which has no reactor to wait for it: return the value itself, "
    "or run the handler in the reactor or the thread pool"
)


def _returned_later(result: Any) -> bool:
    """
    Whether C{result} is a result to come (a coroutine, an awaitable, a
    Twisted Deferred) rather than a value.  One that is awaitable is closed,
    so that it is not reported as never awaited.
    """
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()
        return True
    defer = sys.modules.get("twisted.internet.defer")
    return defer is not None and isinstance(result, defer.Deferred)


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr_short(func)


def answer_for(func: Any, args: Any, kwargs: Any) -> bytes:
    """Run one call and return the pickled answer (never raises)."""
    try:
        result = func(*args, **kwargs)
    except BaseException as e:
        trace = traceback.format_exc()
        try:
            data = pickle.dumps(("raise", e, trace), pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)  # some exceptions pickle but do not unpickle
        except Exception:
            data = pickle.dumps(
                (
                    "remote",
                    f"{type(e).__module__}.{type(e).__qualname__}",
                    str(e),
                    trace,
                ),
                pickle.HIGHEST_PROTOCOL,
            )
        return data
    if _returned_later(result):
        error = TypeError(_LATER.format(name=_name(func), kind=type(result).__name__))
        return pickle.dumps(("raise", error, ""), pickle.HIGHEST_PROTOCOL)
    try:
        return pickle.dumps(("ok", result), pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        what = f"the result {_describe_unpicklable(result)}"
        return pickle.dumps(
            ("unpicklable", what, f"{type(e).__name__}: {e}"), pickle.HIGHEST_PROTOCOL
        )


class _Channel:
    """The worker's pipes while it serves, and who may use them."""

    def __init__(self) -> None:
        self.requests: Optional[BinaryIO] = None
        self.answers: Optional[BinaryIO] = None
        self.lock = threading.Lock()
        self.in_call = False
        self.background: List[threading.Thread] = []
        self.limit = UPCALL_MAX


_channel = _Channel()


def upcall(name: str, body: bytes) -> bytes:
    """
    Ask the main process's handler C{name} (see
    C{ProcessPool.upcalls}) to answer C{body}, and wait for its answer.
    Only a call running in a worker process of the pool can: from any
    other thread or process this raises L{UpcallError}.  Thread-safe: the
    threads of one call take turns.

    @raise UpcallError: with the main process's error message, or when the
        request or its answer is over the bound.
    """
    channel = _channel
    payload = name.encode("utf-8") + b"\0" + body
    if len(payload) > channel.limit:
        raise UpcallError(
            f"the request to the main process ({len(payload)} bytes) is over the "
            f"{channel.limit}-byte bound of the worker link"
        )
    with channel.lock:
        requests, answers = channel.requests, channel.answers
        if not channel.in_call or requests is None or answers is None:
            raise UpcallError(
                "no link to the main process here: only a call running in one of "
                "the bridge's process workers has one"
            )
        answers.write(HEADER.pack(len(payload) | UPCALL_BIT) + payload)
        answers.flush()
        header = _read_exact(requests, HEADER.size)
        if header is None:
            raise UpcallError("the main process closed the worker link")
        (length,) = HEADER.unpack(header)
        if not length & UPCALL_BIT:
            # Nothing else may come while a call runs: the link is broken.
            os._exit(70)
        reply = _read_exact(requests, length & ~UPCALL_BIT)
        if reply is None:
            raise UpcallError("the main process closed the worker link")
    if reply[:1] == b"+":
        return reply[1:]
    raise UpcallError(reply[1:].decode("utf-8", "replace"))


def in_background(target: Callable[[], Any]) -> threading.Thread:
    """
    Run C{target} in a thread of the current call: the call's answer is
    sent once it is done, so that its upcalls still have the link.
    """
    thread = threading.Thread(target=target, daemon=True)
    with _channel.lock:
        _channel.background.append(thread)
    thread.start()
    return thread


def _answer_in_call(func: Any, args: Any, kwargs: Any) -> bytes:
    """L{answer_for}, with the link open for the call and its background threads."""
    channel = _channel
    with channel.lock:
        channel.in_call = True
    try:
        data = answer_for(func, args, kwargs)
        while True:
            with channel.lock:
                if not channel.background:
                    break
                thread = channel.background.pop()
            thread.join()
    finally:
        with channel.lock:
            channel.in_call = False
    return data


def serve(requests: BinaryIO, answers: BinaryIO) -> int:
    """Answer calls until end of input; return the exit status."""
    _channel.requests, _channel.answers = requests, answers
    try:
        _channel.limit = int(os.environ.get(UPCALL_MAX_ENV) or UPCALL_MAX)
    except ValueError:
        _channel.limit = UPCALL_MAX
    answers.write(_frame(b""))
    answers.flush()
    while True:
        header = _read_exact(requests, HEADER.size)
        if header is None:
            return 0
        (length,) = HEADER.unpack(header)
        payload = _read_exact(requests, length)
        if payload is None:
            return 0
        try:
            func, args, kwargs = loads(payload)
        except BaseException as e:
            data = pickle.dumps(
                ("undecodable", f"{type(e).__name__}: {e}", traceback.format_exc()),
                pickle.HIGHEST_PROTOCOL,
            )
        else:
            data = _answer_in_call(func, args, kwargs)
        del payload
        answers.write(_frame(data))
        answers.flush()


def main() -> int:
    """The worker's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if str(os.getppid()) != os.environ.get(PARENT_ENV, str(os.getppid())):
        return 1  # the parent died before prctl took effect
    # Keep stdin away from user code: our calls come on descriptor 3.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    requests = os.fdopen(REQUEST_FD, "rb", buffering=1 << 16)
    answers = os.fdopen(ANSWER_FD, "wb", buffering=1 << 16)
    _setup_paths()
    return serve(requests, answers)


if __name__ == "__main__":
    sys.exit(main())
