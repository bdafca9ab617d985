"""
The computed entries of flaskJSONRPCServer's C{_connection} (C{call},
C{dispatcher}, C{request}...) and the small helpers behind the private
methods its example programs call (C{_sleep}, C{_logger}, C{_getms}...).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional

from twisted.internet import task
from twisted.logger import Logger
from twisted.python import threadable

from twistbridge.jsonrpc._worker import log_text

__all__ = ["connection_extra", "getms", "logger", "script_path", "sleep"]

log = Logger()


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
    (C{async def} methods, C{run_in="reactor"}) a C{Deferred} to await,
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


def script_path(full: bool = False, real: bool = True, f: Optional[str] = None) -> str:
    """The main program's directory (C{full}: its file), as flaskJSONRPCServer's."""
    f = f or sys.argv[0]
    path = os.path.realpath(f) if real else f
    return path if full else os.path.dirname(os.path.realpath(f) if real else f)


def getms(inMS: bool = True) -> float:
    """The time now, in milliseconds (C{inMS=False}: seconds)."""
    return time.time() * 1000.0 if inMS else time.time()


_PREFIXES = ("", "ERROR:", "WARNING:", "INFO:", "DEBUG:")


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
    text = log_text(args)
    prefix = _PREFIXES[level] if level and level < len(_PREFIXES) else ""
    if prefix and not text.startswith(prefix):
        text = f"{prefix} {text}"
    emit = {1: log.error, 2: log.warn, 4: log.debug}.get(level or 0, log.info)
    emit("{text}", text=text)
