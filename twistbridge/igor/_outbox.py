"""
What an instance keeps for the other instances while Redis is out of reach:
a bounded queue of the messages it could not publish, oldest dropped first.

Pure (no Twisted): the Redis broker puts into it while it cannot publish
and takes everything out, in order, once it can again.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Tuple

__all__ = ["MAX_BYTES", "MAX_MESSAGES", "Outbox"]

#: Messages kept at most while Redis is away.
MAX_MESSAGES = 10_000
#: Bytes kept at most (payloads counted) while Redis is away.
MAX_BYTES = 64 * 1024 * 1024


class Outbox:
    """
    A first-in first-out queue of C{(channel, message)} bounded both in
    messages and in bytes: past either bound the oldest messages go.

    @ivar dropped: messages dropped so far to stay within the bounds.
    @ivar size: bytes of the messages queued now.
    """

    def __init__(
        self, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.dropped = 0
        self.size = 0
        self._queue: Deque[Tuple[str, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, channel: str, message: bytes) -> None:
        """Queue one message; drop the oldest ones past the bounds."""
        self._queue.append((channel, message))
        self.size += len(message)
        while self._queue and (
            len(self._queue) > self.max_messages or self.size > self.max_bytes
        ):
            _, old = self._queue.popleft()
            self.size -= len(old)
            self.dropped += 1

    def take_all(self) -> List[Tuple[str, bytes]]:
        """Everything queued, oldest first; the queue is empty after."""
        items = list(self._queue)
        self._queue.clear()
        self.size = 0
        return items
