"""
The pacing of bgpy frames on one connection.

bgpy's own client reads an answer L{BUFFER_TIME} after it wrote, in one
C{recv}: two frames that reach it in one read are one corrupt frame to it.
So a frame is written no sooner than L{RECEIVE_PAUSE} after the frame before
it was read (the answer is there when the client reads) and L{BUFFER_TIME}
after the frame before it was written (the next one cannot join it).  JSON
lines need no pacing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import deferLater

from twistbridge.bgpy._core import BUFFER_TIME, RECEIVE_PAUSE

__all__ = ["Pacer"]


class Pacer:
    """
    When the next frame of one connection may be written.

    @ivar not_before: the reactor time before which it may not.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.not_before = 0.0

    def received(self) -> None:
        """A frame was read: answer it no sooner than L{RECEIVE_PAUSE} from now."""
        self.not_before = max(self.not_before, self.reactor.seconds() + RECEIVE_PAUSE)

    async def wait(self) -> None:
        """Return once the next frame may be written."""
        delay = self.not_before - self.reactor.seconds()
        if delay > 0:
            await deferLater(self.reactor, delay, lambda: None)

    def sent(self) -> None:
        """A frame was written: the next one waits L{BUFFER_TIME}."""
        self.not_before = self.reactor.seconds() + BUFFER_TIME
