"""The process pool behind C{run_in="process"} (see L{twistbridge.offload})."""

from __future__ import annotations

import pickle
from typing import Any, Callable, Dict, Optional

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred


class ProcessPool:
    """
    A pool of worker processes running pickled calls.

    @ivar size: the number of workers.
    @ivar call_timeout: seconds a call may run, or L{None}.
    """

    def __init__(self, size: int, call_timeout: Optional[float] = None) -> None:
        self.size = size
        self.call_timeout = call_timeout
        self._executor: Any = None

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """Run C{func(*args, **kwargs)} in a worker process."""
        from concurrent.futures import ProcessPoolExecutor

        try:
            pickle.dumps((func, args, kwargs))
        except Exception as e:
            return defer.fail(TypeError(f"cannot pickle the call to {func!r}: {e}"))
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.size)
        future = self._executor.submit(func, *args, **kwargs)
        return threads.deferToThread(future.result)

    def stop(self) -> None:
        """Stop every worker."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def stats(self) -> Dict[str, Any]:
        """Size, busy workers and queued calls."""
        return {"size": self.size}
