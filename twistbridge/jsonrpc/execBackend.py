"""
flaskJSONRPCServer's C{execBackend} package: its exec backends, to pass as
C{dispatcherBackend=} to the server or to C{registerFunction}, mapped on
twistbridge's pools.

    - C{execBackend_parallelWithSocket(id=..., poolSize=N)} and
      C{execBackend_parallelWithSocketNew(...)}: the process pool (of
      C{poolSize} workers, unless the server was given C{processes=});
      their methods' C{_connection} has C{execBackendId} (the backend's
      C{id}), C{parallelId}, C{parallelType}, C{call.eval}... as with
      C{"parallelWithSocket"}.  C{parallelWithSocketNew} adds its IPC
      flags (C{call.IPCFlagCapture}, C{IPCFlagRelease}, C{IPCFlagGet},
      C{IPCFlagCheck}, C{IPCFlagClear} and their C{...Async} forms), kept
      in the main process; with C{overloadMagicVarInParent} (its default)
      methods running in the main process find them under
      C{_connection.<id>}.
    - C{execBackend_threaded(...)}: the thread pool.

Their tuning arguments (sleep times, C{useCPickle}, C{allowThreads}...)
are accepted and have no effect; C{saveResult=False} is accepted too
(results are always returned).  Pure: no Twisted.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional

from twistbridge.jsonrpc._dispatch import AttrDict as MagicDict
from twistbridge.jsonrpc._worker import MainError

__all__ = [
    "IPCFlags",
    "execBackendMap",
    "execBackend_parallelWithSocket",
    "execBackend_parallelWithSocketNew",
    "execBackend_threaded",
]


class _Backend:
    """An exec backend: where its methods run, and its C{_connection} entries."""

    run_in = "process"
    ipc = False

    def __init__(
        self,
        id: str = "execBackend",
        poolSize: int = 1,
        saveResult: bool = True,
        overloadMagicVarInParent: bool = True,
        **tuning: Any,
    ) -> None:
        self.id = self._id = id
        self.poolSize = poolSize
        self.saveResult = saveResult
        self.overloadMagicVarInParent = overloadMagicVarInParent
        self.settings = MagicDict(poolSize=poolSize, saveResult=saveResult, **tuning)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r}>"


class execBackend_parallelWithSocket(_Backend):
    """flaskJSONRPCServer's process backend: methods run in the process pool."""

    def __init__(
        self, id: str = "execBackend_parallelWithSocket", **options: Any
    ) -> None:
        super().__init__(id, **options)


class execBackend_parallelWithSocketNew(_Backend):
    """The process backend with IPC flags (see the module docstring)."""

    ipc = True

    def __init__(
        self, id: str = "execBackend_parallelWithSocketNew", **options: Any
    ) -> None:
        super().__init__(id, **options)


class execBackend_threaded(_Backend):
    """flaskJSONRPCServer's threaded backend: methods run in the thread pool."""

    run_in = "thread"

    def __init__(self, id: str = "execBackend_threaded", **options: Any) -> None:
        super().__init__(id, **options)


#: flaskJSONRPCServer's backends by name (C{execBackendMap[name](notif)}).
execBackendMap = MagicDict(
    parallelWithSocket=lambda notif: execBackend_parallelWithSocket(
        saveResult=not notif
    ),
    parallelWithSocketNew=lambda notif: execBackend_parallelWithSocketNew(),
    threaded=lambda notif: execBackend_threaded(saveResult=not notif),
    threadedNative=lambda notif: execBackend_threaded(saveResult=not notif),
)


class IPCFlags:
    """
    flaskJSONRPCServer's IPC flags: named counters that methods in any
    process capture (up to a C{limit}), release, read, wait for and clear.
    Kept in the main process; thread-safe.  Blocking forms wait in the
    calling thread (never call them in the reactor thread).
    """

    def __init__(self) -> None:
        self._flags: Dict[str, int] = {}
        self._changed = threading.Condition()
        self._next = 0

    def _new_id(self) -> str:
        self._next += 1
        return f"flag-{self._next}"

    def _until(self, ready: Callable[[], bool], timeout: Optional[float]) -> bool:
        deadline = None if not timeout else time.monotonic() + timeout
        while not ready():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._changed.wait(left)
        return True

    def capture(
        self,
        lockId: Optional[str] = None,
        limit: Optional[int] = 1,
        block: bool = True,
        onlyExisted: bool = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """
        Add one to the flag once it is below C{limit} (a new flag starts at
        0 unless C{onlyExisted}); C{True} (a new id when none was given),
        C{False} when C{block=False} and it is at its limit (L{None} for a
        missing flag with C{onlyExisted}) or the C{timeout} passed.
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise MainError('Param "limit" must be positive integer or None')
        with self._changed:
            flags = self._flags
            new = lockId is None
            if new:
                lockId = self._new_id()
            exists = lockId in flags

            def free() -> bool:
                if lockId in flags:
                    return limit is None or flags[lockId] < limit
                return not onlyExisted

            if not block:
                if not exists and onlyExisted:
                    return None
                if not free():
                    return False
            elif not self._until(free, timeout):
                return False
            assert lockId is not None
            flags[lockId] = flags.get(lockId, 0) + 1
            self._changed.notify_all()
            return lockId if new else True

    def release(self, lockId: str) -> None:
        """Take one from the flag (not below 0)."""
        with self._changed:
            if self._flags.get(lockId, 0) > 0:
                self._flags[lockId] -= 1
            self._changed.notify_all()

    def get(self, lockId: str) -> Optional[int]:
        """The flag's count, or L{None} when there is no such flag."""
        with self._changed:
            return self._flags.get(lockId)

    def check(
        self,
        lockId: str,
        value: int = 0,
        block: bool = True,
        onlyExisted: bool = True,
        timeout: Optional[float] = None,
    ) -> Any:
        """
        Whether the flag's count is C{value} (C{block}: wait until it is, or
        the C{timeout} passed); a missing flag passes unless C{onlyExisted}
        (then L{None} without C{block}).
        """
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MainError('Param "value" must be positive integer or zero')
        with self._changed:
            flags = self._flags

            def ready() -> bool:
                if lockId in flags:
                    return flags[lockId] == value
                return not onlyExisted

            if not block:
                if lockId not in flags:
                    return None if onlyExisted else True
                return flags[lockId] == value
            return self._until(ready, timeout)

    def clear(self, lockId: str) -> None:
        """Forget the flag."""
        with self._changed:
            self._flags.pop(lockId, None)
            self._changed.notify_all()
