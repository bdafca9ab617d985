"""
The test reactor: a L{MemoryReactorClock} that also takes calls from other
threads, so that thread handlers, Igor thread processes and the real thread
pool (C{real_pools=True}) can hand their results back as they do to a real
reactor.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Tuple

from twisted.internet.testing import MemoryReactorClock

__all__ = ["TestReactor"]


class TestReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} with C{callFromThread}: calls from any thread are
    queued and run, in order, by L{run_thread_calls} (which
    L{twistbridge.testing._client.BridgeTestClient.flush} calls).

    Like L{MemoryReactorClock}, nothing runs by itself: time moves with
    C{advance} and pending calls run when the test asks.
    """

    # Not a test case, whatever pytest's collector thinks of the name.
    __test__ = False

    def __init__(self) -> None:
        MemoryReactorClock.__init__(self)
        self._from_threads: queue.SimpleQueue[
            Tuple[Callable[..., Any], Tuple[Any, ...], dict]
        ] = queue.SimpleQueue()
        self.running = True
        self._thread = threading.get_ident()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Queue C{f(*args, **kw)} for the next L{run_thread_calls} (any thread)."""
        self._from_threads.put((f, args, kw))

    def run_thread_calls(self, wait: float = 0.0) -> int:
        """
        Run the calls queued by L{callFromThread}; return how many ran.

        @param wait: seconds to wait for a first call when none is queued
            (used only while real threads are busy).
        """
        ran = 0
        block = wait > 0
        while True:
            try:
                f, args, kw = self._from_threads.get(block=block, timeout=wait or None)
            except queue.Empty:
                return ran
            block = False
            f(*args, **kw)
            ran += 1

    def stop(self) -> None:
        """What a handler's C{SystemExit} asks: recorded, as C{MemoryReactor} does."""
        MemoryReactorClock.stop(self)
        self.running = False
