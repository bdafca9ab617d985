"""
Igor's streams: a client message becomes one handler call through the
bridge's offloader, with a L{Stream} as its C{out}; the stream closes when
the call finishes (when what the handler returned fired, if that was a
L{Deferred} or a coroutine: see L{twistbridge.offload}).

Streams are keyed by (connection, streamId): two clients using the same
stream id never see each other's data.  A message for a stream id that is
still open waits for it, in order, as Igor (which handles one message at a
time) did.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, Optional, Tuple

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger, LogLevel
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.igor._core import (
    ProcessCall,
    RecordingOutput,
    StreamClosedError,
    close_frame,
    data_frame,
    error_frame,
    error_text,
    stream_prefix,
)
from twistbridge.offload import Handler, call_now

if TYPE_CHECKING:
    from twistbridge.igor._hub import Hub

__all__ = ["MAX_INFLIGHT", "Stream", "Streams"]

log = Logger(namespace="twistbridge.igor")

#: Open plus queued streams on one connection above which the hub stops
#: reading from it (and below half of which it reads again).
MAX_INFLIGHT = 1000

_isInIOThread = threadable.isInIOThread


class Stream:
    """
    The C{out} of one handler call: C{out.send(data)} and
    C{out.send_error(error)}, safe to call from any thread.

    @ivar stream_id: the client's stream id.
    @ivar closed: the call finished, or its client disconnected; sending then
        raises L{StreamClosedError}.
    """

    __slots__ = (
        "_hub",
        "_conn",
        "stream_id",
        "closed",
        "deferred",
        "backlog",
        "_sync",
        "prefix",
    )

    def __init__(
        self, hub: Hub, conn: Any, stream_id: Any, backlog: Deque[Any]
    ) -> None:
        self._hub = hub
        self._conn = conn
        self.stream_id = stream_id
        self.closed = False
        self.deferred: Optional[Deferred] = None
        self.backlog = backlog
        self._sync = False
        self.prefix = stream_prefix(stream_id)

    def send(self, data: Any = None) -> None:
        """
        Send C{{"streamId": id, "data": data}} to the client.  From a thread,
        waits while the client's write buffer is full.
        """
        self._write(data_frame(self.prefix, data))

    def send_error(self, error: Any) -> None:
        """Send C{{"streamId": id, "error": str(error)}}; the stream stays open."""
        self._write(error_frame(self.prefix, error))

    def _write(self, payload: bytes) -> None:
        if self.closed:
            raise StreamClosedError("Cannot write to closed stream")
        conn = self._conn
        if _isInIOThread():
            conn.write(payload)
            return
        wait = getattr(conn, "wait_writable", None)
        if wait is None:
            self._hub.reactor.callFromThread(conn.write, payload)
            return
        still_open = wait(self, len(payload))
        self._hub.reactor.callFromThread(conn.write_queued, payload)
        if self.closed or not still_open:
            # Closed, or the connection is closing (a dropped client): tell
            # the handler now rather than let it send into the void.
            raise StreamClosedError("Cannot write to closed stream")

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id!r} closed={self.closed}>"


class Streams:
    """
    The stream calls of one hub: started by L{Hub.dispatch}, ended when
    their call finishes or their client goes away.

    A connection carries its open streams in C{conn.streams} (stream id to
    L{Stream}) and counts open plus queued ones in C{conn.inflight}.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._process_handlers: Dict[str, Tuple[Handler, Handler]] = {}

    def start(self, conn: Any, stream_id: Any, handler: Handler, data: Any) -> None:
        """Run C{handler} for a message, after the open stream of that id if any."""
        conn.inflight += 1
        if conn.inflight == MAX_INFLIGHT:
            conn.pause_reading()
        current = conn.streams.get(stream_id)
        if current is not None:
            current.backlog.append((handler, data))
            return
        self._run(conn, stream_id, deque([(handler, data)]))

    def _run(self, conn: Any, stream_id: Any, backlog: Deque[Any]) -> None:
        """Run queued calls of one stream id, one after another."""
        hub = self.hub
        while backlog and conn in hub.connections:
            handler, data = backlog.popleft()
            stream = Stream(hub, conn, stream_id, backlog)
            conn.streams[stream_id] = stream
            call_handler = handler
            out: Any = stream
            if handler.run_in == "process":
                call_handler, out = self._in_process(handler), RecordingOutput()
            stream._sync = True
            session = hub.sessions.get(conn.client_id)
            d: Optional[Deferred] = None
            if call_handler.run_in == "reactor":
                # No Deferred when the handler is done at once (the usual
                # echo): one Deferred and its callback less a message.
                result, d = call_now(
                    call_handler.func,
                    out,
                    data,
                    session=session,
                    scope=hub.scope,
                    client_id=conn.client_id,
                )
                if d is None:
                    try:
                        self._finished(result, stream, handler)
                    except Exception:
                        log.failure("igor: ending stream {s!r} failed", s=stream)
            else:
                d = hub.offloader.call(
                    call_handler,
                    out,
                    data,
                    session=session,
                    scope=hub.scope,
                    client_id=conn.client_id,
                )
            if d is not None:
                stream.deferred = d
                d.addBoth(self._finished, stream, handler)
            stream._sync = False
            if not stream.closed:
                return  # still running: _finished continues the backlog

    def _in_process(self, handler: Handler) -> Handler:
        cached = self._process_handlers.get(handler.name)
        if cached is None or cached[0] is not handler:
            wrapped = Handler(ProcessCall(handler.func), "process", handler.name)
            cached = self._process_handlers[handler.name] = (handler, wrapped)
        return cached[1]

    def _finished(self, result: Any, stream: Stream, handler: Handler) -> None:
        stream.deferred = None
        conn = stream._conn
        if stream.closed:
            # The client went away and the call was cancelled or ran on.
            if isinstance(result, Failure) and not result.check(
                CancelledError, StreamClosedError
            ):
                log.failure(
                    "igor handler {action} failed",
                    result,
                    LogLevel.error,
                    action=handler.name,
                )
            return None
        stream.closed = True
        exiting = False
        if handler.run_in == "process" and not isinstance(result, Failure):
            outcome, messages, detail = result
            for kind, value in messages:
                frame = data_frame if kind == "data" else error_frame
                conn.write(frame(stream.prefix, value))
            if outcome == "exit":
                exiting = True
            elif outcome == "error":
                text, trace = detail
                log.error(
                    "igor handler {action} failed in a worker process:\n{trace}",
                    action=handler.name,
                    trace=trace,
                )
                conn.write(error_frame(stream.prefix, text))
        elif isinstance(result, Failure):
            if result.check(SystemExit):
                exiting = True
            else:
                log.failure(
                    "igor handler {action} failed",
                    result,
                    LogLevel.error,
                    action=handler.name,
                )
                conn.write(error_frame(stream.prefix, error_text(result.value)))
        conn.write(close_frame(stream.prefix))
        if conn.streams.get(stream.stream_id) is stream:
            del conn.streams[stream.stream_id]
        conn.inflight -= 1
        if conn.inflight == MAX_INFLIGHT // 2:
            conn.resume_reading()
        if stream.backlog and not stream._sync:
            self._run(conn, stream.stream_id, stream.backlog)
        self.hub.stream_ended(conn, handler.name if exiting else None)
        return None

    def close(self, conn: Any) -> None:
        """C{conn} went away: close its streams, cancel their pending calls."""
        streams = list(conn.streams.values())
        conn.streams = {}
        for stream in streams:
            stream.closed = True
            stream.backlog.clear()
            if stream.deferred is not None:
                stream.deferred.cancel()
