"""
The run-time state every path of a bridge shares: per-method call
statistics (L{Stats}, flaskJSONRPCServer's C{stats()}) and the
C{lock}/C{unlock} state (L{Locks}).  Only the state and its rules live here:
holding calls until a lock is lifted is the controller's
(L{twistbridge.jsonrpc._controller}).  Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple


def lock_key(func: Any) -> Any:
    """The object that names a function for L{Locks} (bound methods: C{__func__})."""
    return getattr(func, "__func__", func)


# Stats ---------------------------------------------------------------------


class Stats:
    """
    Per-method call counts and timings (C{stats(inMS=False)}).

    Thread-safe: calls are recorded from the reactor thread, read from any.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._methods: Dict[Tuple[str, str], List[float]] = {}
        self.processing = 0
        self.requests = 0
        self.started = time.monotonic()

    def record(self, path: str, name: str, seconds: float, ok: bool) -> None:
        """Count one finished call."""
        with self._lock:
            entry = self._methods.get((path, name))
            if entry is None:
                entry = self._methods[(path, name)] = [0, 0, 0.0, 0.0]
            entry[0] += 1
            if not ok:
                entry[1] += 1
            entry[2] += seconds
            if seconds > entry[3]:
                entry[3] = seconds

    def snapshot(self, in_ms: bool = False) -> Dict[str, Any]:
        """
        The figures: C{methods} maps C{"<path> <name>"} to C{count},
        C{errors}, C{total}, C{average}, C{max} (seconds, or milliseconds with
        C{in_ms}); C{speedStats} has flaskJSONRPCServer's C{<name>_average}
        and C{<name>_max} keys.
        """
        scale = 1000.0 if in_ms else 1.0
        methods: Dict[str, Any] = {}
        speed: Dict[str, float] = {}
        with self._lock:
            items = [(k, list(v)) for k, v in self._methods.items()]
            processing = self.processing
            requests = self.requests
        for (path, name), (count, errors, total, longest) in sorted(items):
            average = total / count if count else 0.0
            methods[f"{path} {name}"] = {
                "path": path,
                "method": name,
                "count": count,
                "errors": errors,
                "total": round(total * scale, 6),
                "average": round(average * scale, 6),
                "max": round(longest * scale, 6),
            }
            speed[f"{name}_average"] = round(average * scale, 6)
            speed[f"{name}_max"] = round(longest * scale, 6)
        uptime = time.monotonic() - self.started
        return {
            "inMS": in_ms,
            "methods": methods,
            "speedStats": speed,
            "processingDispatcherCount": processing,
            "requestCount": requests,
            "uptime": round(uptime * scale, 3),
        }


# Locks -------------------------------------------------------------------


class Locks:
    """
    flaskJSONRPCServer's C{lock}/C{unlock}: a global lock and per-function
    locks; a function unlocked with C{exclusive=True} runs even while the
    whole server is locked.  Calls of a locked function wait (the adapter
    holds them until L{locked} turns false).
    """

    def __init__(self) -> None:
        self.global_lock = False
        self._funcs: Dict[Any, Optional[bool]] = {}

    def lock(self, func: Any = None) -> None:
        """Lock everything, or one function."""
        if func is None:
            self.global_lock = True
        else:
            self._funcs[lock_key(func)] = True

    def unlock(self, func: Any = None, exclusive: bool = False) -> None:
        """Unlock everything, or one function (C{exclusive}: even under a global lock)."""
        if func is None:
            self.global_lock = False
        else:
            key = lock_key(func)
            if exclusive:
                self._funcs[key] = False
            else:
                self._funcs.pop(key, None)

    def active(self) -> bool:
        """Whether any lock is set (the fast path skips the lookups otherwise)."""
        return self.global_lock or bool(self._funcs)

    def locked(self, key: Any = None) -> bool:
        """Whether calls of C{key} (or, for L{None}, all calls) must wait."""
        if key is None:
            return self.global_lock
        state = self._funcs.get(key)
        if state is False:
            return False
        return bool(state) or self.global_lock
