"""
The Igor hub: one per bridge, shared by every WebSocket listener (C{/ws} on
the HTTP port and the standalone Igor port).

It holds what Igor keeps server-wide -- client ids, per-client sessions, the
shared C{scope}, process outputs -- and runs each stream: a client message
becomes one handler call through the bridge's offloader, with a L{Stream} as
its C{out}; the stream closes when the call finishes.

A connection, for the hub, is any object with a C{client_id}, a C{streams}
dict, C{write(payload)} (reactor thread), C{go_away()} and C{abort()}; the
autobahn protocol in L{twistbridge.igor._protocol} is the real one.  Streams
are keyed by (connection, streamId): two clients using the same stream id
never see each other's data.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger, LogLevel
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.igor._core import (
    INTRODUCE_SELF,
    SESSION_TIMEOUT,
    ProcessCall,
    ProtocolError,
    RecordingOutput,
    StreamClosedError,
    UnknownClientError,
    close_frame,
    data_frame,
    encode_action,
    encode_close,
    encode_error,
    encode_protocol_error,
    error_frame,
    error_text,
    normalize_client_id,
    parse_introduction,
    parse_message,
    parse_resume_token,
    shorten,
    stream_prefix,
    unknown_action,
)
from twistbridge.igor._parse import INLINE_LIMIT, parse_large
from twistbridge.offload import Handler

log = Logger(namespace="twistbridge.igor")

#: Open plus queued streams on one connection above which the hub stops
#: reading from it (and below half of which it reads again).
MAX_INFLIGHT = 1000

#: The C{streamId} and C{action} of the message that hands a client its
#: resume token (C{igor_takeover="token"} only).
TOKEN_STREAM = "introduce_self"
TOKEN_ACTION = "resume_token"

#: The takeover modes (the C{igor_takeover} setting).
TAKEOVER_MODES = ("name", "token")

BUSY = ProtocolError(503, "Server is busy: message not handled, try again later")

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


class ProcessOutput:
    """
    The C{output} of an Igor process: messages to every client or to one.

    Safe to call from any thread.  After the service stopped, sends are
    dropped silently (a process thread may outlive the server briefly).

    @ivar process_id: the process's id, the C{streamId} of its messages.
    @ivar closed: L{finish} was called; sending then raises.
    """

    def __init__(self, hub: Hub, process_id: Any) -> None:
        self._hub = hub
        self.process_id = process_id
        self.closed = False
        self.on_message_received: Callable[..., Any] = lambda *args: None

    def send(self, action: Any, data: Any = None, client_id: Any = None) -> None:
        """
        Send C{{"streamId": process_id, "action": action, "data": data}} to
        every client, or to C{client_id} only.

        @raise UnknownClientError: when C{client_id} is not connected.
        """
        if self.closed:
            raise StreamClosedError("Cannot write to closed output")
        self._hub.emit(encode_action(self.process_id, action, data), client_id)

    def send_error(self, error: Any, client_id: Any = None) -> None:
        """Send C{{"streamId": process_id, "error": str(error)}}."""
        if self.closed:
            raise StreamClosedError("Cannot write to closed output")
        self._hub.emit(encode_error(self.process_id, error), client_id)

    def finish(self) -> None:
        """Send C{{"streamId": process_id, "close": true}} to every client."""
        if self.closed:
            raise StreamClosedError("Output already closed")
        self.closed = True
        self._hub.emit(encode_close(self.process_id), None)


class Hub:
    """
    Igor's server-wide state and stream dispatch.

    @ivar handlers: action name to L{Handler} (the bridge's registrations,
        read at each message, so late registrations count).
    @ivar scope: the dict shared by every handler and process.
    @ivar sessions: client id to that client's session dict.
    @ivar clients: connected client id to its connection.
    @ivar connections: every open connection.
    @ivar session_timeout: seconds a session outlives its client.
    @ivar shutdown_timeout: seconds L{close_all} waits for streams to finish.
    @ivar takeover: C{"name"}: C{introduce_self} with the name of a session
        left less than C{session_timeout} ago takes it over (Igor's rule);
        C{"token"}: only with that session's resume token, which the server
        sends each client with L{TOKEN_STREAM} and L{TOKEN_ACTION}.
    @ivar tokens: client id to its resume token (C{"token"} mode).
    @ivar inline_limit: messages larger than this many bytes are parsed in a
        pool thread (their connection's messages stay in order).
    @ivar on_exit: called when a handler raises L{SystemExit}, with a line
        saying which: whoever serves the hub stops what it serves (the
        bridge's service, or the reactor when the bridge is the process);
        L{None}: the exit is only logged.

    Client ids have one form (L{normalize_client_id}): automatic ids are
    the integers 1, 2, ... skipping every id that is connected or whose
    session is still within its takeover window.
    """

    def __init__(
        self,
        handlers: Dict[str, Handler],
        offloader: Any,
        reactor: Any = None,
        session_timeout: float = SESSION_TIMEOUT,
        shutdown_timeout: float = 10.0,
        takeover: str = "name",
        inline_limit: int = INLINE_LIMIT,
        on_exit: Optional[Callable[[str], Any]] = None,
    ) -> None:
        if takeover not in TAKEOVER_MODES:
            raise ValueError(f"takeover must be 'name' or 'token': {takeover!r}")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.handlers = handlers
        self.offloader = offloader
        self.session_timeout = session_timeout
        self.shutdown_timeout = shutdown_timeout
        self.takeover = takeover
        self.inline_limit = inline_limit
        self.on_exit = on_exit
        self.tokens: Dict[Any, str] = {}
        self.scope: Dict[str, Any] = {}
        self.sessions: Dict[Any, Dict[str, Any]] = {}
        self.clients: Dict[Any, Any] = {}
        self.connections: Set[Any] = set()
        self.outputs: Dict[Any, ProcessOutput] = {}
        self.draining = False
        self.stopped = False
        self._next_id = 1
        self._expiry: Dict[Any, Any] = {}
        self._process_handlers: Dict[str, Tuple[Handler, Handler]] = {}
        self._drained: Optional[Deferred] = None
        self._force_call: Any = None
        self._idle_waiters: List[Deferred] = []

    # connections ---------------------------------------------------------

    def attach(self, conn: Any) -> None:
        """A WebSocket opened: give it a fresh numeric client id and session."""
        client_id = self._new_id()
        conn.client_id = client_id
        conn.streams = {}
        conn.inflight = 0
        conn.parsing = None
        conn.refused = 0
        self.clients[client_id] = conn
        self.sessions[client_id] = {}
        self.connections.add(conn)
        if self.takeover == "token":
            self._issue_token(conn)
        if self.draining:
            conn.go_away()

    def _new_id(self) -> int:
        # Never an id in use, nor one whose session awaits its takeover: a
        # client that named itself "3" must not make the next client share
        # its session.
        client_id = self._next_id
        while (
            client_id in self.clients
            or client_id in self.sessions
            or client_id in self._expiry
        ):
            client_id += 1
        self._next_id = client_id + 1
        return client_id

    def _issue_token(self, conn: Any) -> None:
        token = secrets.token_urlsafe(24)
        self.tokens[conn.client_id] = token
        conn.write(
            encode_action(
                TOKEN_STREAM,
                TOKEN_ACTION,
                {"client_id": conn.client_id, "resume_token": token},
            )
        )

    def detach(self, conn: Any) -> None:
        """
        A WebSocket closed: cancel its pending calls (a thread call that has
        not started is dropped), and keep its session for
        C{session_timeout} seconds.
        """
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        conn.parsing = None
        if conn.refused > 1:
            log.info(
                "igor client {client_id}: {n} more messages refused",
                client_id=conn.client_id,
                n=conn.refused - 1,
            )
        streams = list(conn.streams.values())
        conn.streams = {}
        for stream in streams:
            stream.closed = True
            stream.backlog.clear()
            if stream.deferred is not None:
                stream.deferred.cancel()
        client_id = conn.client_id
        if self.clients.get(client_id) is conn:
            del self.clients[client_id]
            self._expiry[client_id] = self.reactor.callLater(
                self.session_timeout, self._expire, client_id
            )
        if self._drained is not None and not self.connections:
            self._finish_drain()
        self._check_idle()

    def _expire(self, client_id: Any) -> None:
        self._expiry.pop(client_id, None)
        if client_id not in self.clients:
            self.sessions.pop(client_id, None)
            self.tokens.pop(client_id, None)

    # messages --------------------------------------------------------------

    def receive(self, conn: Any, payload: bytes) -> None:
        """
        Handle one client message (reactor thread).  One larger than
        C{inline_limit} is parsed in a pool thread, reading from its client
        paused meanwhile; the client's next messages wait for it, in order.
        """
        if conn.parsing is not None:
            conn.parsing.append(payload)
            return None
        if len(payload) > self.inline_limit:
            return self._parse_off(conn, payload)
        return self.dispatch(conn, parse_message(payload))

    def _parse_off(self, conn: Any, payload: bytes) -> None:
        conn.parsing = deque()
        conn.pause_reading()
        try:
            d = self.offloader.in_thread(parse_large, payload)
        except Exception:  # a pool that refuses at once (full, stopped)
            d = defer.fail()
        d.addBoth(self._parsed, conn)

    def _parsed(self, request: Any, conn: Any) -> None:
        if conn not in self.connections or conn.parsing is None:
            return None  # gone meanwhile
        if isinstance(request, Failure):
            log.failure(
                "igor client {client_id}: a large message could not be parsed",
                request,
                LogLevel.warn,
                client_id=conn.client_id,
            )
            request = BUSY
        waiting, conn.parsing = conn.parsing, None
        self.dispatch(conn, request)
        while waiting and conn in self.connections:
            payload = waiting.popleft()
            if len(payload) > self.inline_limit:
                conn.resume_reading()
                self._parse_off(conn, payload)
                conn.parsing.extend(waiting)
                return None
            self.dispatch(conn, parse_message(payload))
        conn.resume_reading()
        return None

    def dispatch(self, conn: Any, request: Any) -> None:
        """Act on a parsed message: a L{Request} or a L{ProtocolError}."""
        if isinstance(request, ProtocolError):
            return self.refuse(conn, request)
        if request.action == INTRODUCE_SELF:
            return self.introduce(conn, request.data)
        handler = self.handlers.get(request.action)
        if handler is None:
            return self.refuse(conn, unknown_action(request.action))
        if self.draining:
            return self.refuse(conn, ProtocolError(503, "Server is shutting down"))
        conn.inflight += 1
        if conn.inflight == MAX_INFLIGHT:
            conn.pause_reading()
        current = conn.streams.get(request.stream_id)
        if current is not None:
            # The same stream id while that stream is open: run it after, in
            # order, as Igor (which handles one message at a time) did.
            current.backlog.append((handler, request.data))
            return None
        self._run(conn, request.stream_id, deque([(handler, request.data)]))
        return None

    def refuse(self, conn: Any, error: ProtocolError) -> None:
        """
        Answer C{{"error": ..., "code": ...}}.  The first refusal of a
        connection is logged; the others are counted, logged as one line
        when it closes (a client sending junk in a loop cannot flood the log).
        """
        conn.refused = getattr(conn, "refused", 0) + 1
        if conn.refused == 1:
            log.info(
                "igor client {client_id}: {code} {message}",
                client_id=conn.client_id,
                code=error.code,
                message=error.message,
            )
        conn.write(encode_protocol_error(error))

    def introduce(self, conn: Any, data: Any) -> None:
        """
        C{introduce_self}: rename the client; a session of that name left
        less than C{session_timeout} seconds ago is taken over -- by name,
        or (C{takeover="token"}) only with its resume token.
        """
        new_id = parse_introduction(data)
        if isinstance(new_id, ProtocolError):
            return self.refuse(conn, new_id)
        old_id = conn.client_id
        if new_id == old_id:
            return None
        if new_id in self.clients:
            return self.refuse(
                conn,
                ProtocolError(
                    400, f'Client id "{shorten(new_id)}" is already connected'
                ),
            )
        resumable = new_id in self._expiry
        if resumable and self.takeover == "token":
            token = parse_resume_token(data)
            if isinstance(token, ProtocolError):
                return self.refuse(conn, token)
            expected = self.tokens.get(new_id, "")
            if token is None or not hmac.compare_digest(
                token.encode("utf-8"), expected.encode("utf-8")
            ):
                return self.refuse(
                    conn,
                    ProtocolError(
                        403,
                        f'Client id "{shorten(new_id)}" belongs to a session '
                        "awaiting its client: resuming it needs its resume_token",
                    ),
                )
        if resumable:
            self._expiry.pop(new_id).cancel()
            self.sessions.pop(old_id, None)
        else:
            self.sessions[new_id] = self.sessions.pop(old_id, None) or {}
        self.tokens.pop(old_id, None)
        del self.clients[old_id]
        self.clients[new_id] = conn
        conn.client_id = new_id
        log.info(
            "igor client {old_id} is now {new_id}{how}",
            old_id=old_id,
            new_id=new_id,
            how=" (session taken over)" if resumable else "",
        )
        if self.takeover == "token":
            self._issue_token(conn)
        return None

    # streams ------------------------------------------------------------------

    def _run(self, conn: Any, stream_id: Any, backlog: Deque[Any]) -> None:
        """Run queued calls of one stream id, one after another."""
        while backlog and conn in self.connections:
            handler, data = backlog.popleft()
            stream = Stream(self, conn, stream_id, backlog)
            conn.streams[stream_id] = stream
            call_handler, out = handler, stream
            if handler.run_in == "process":
                call_handler, out = self._in_process(handler), RecordingOutput()
            stream._sync = True
            d = self.offloader.call(
                call_handler,
                out,
                data,
                session=self.sessions.get(conn.client_id),
                scope=self.scope,
                client_id=conn.client_id,
            )
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
        if exiting:
            self.request_exit(handler.name)
        elif self._drained is not None and not conn.streams:
            conn.go_away()
        self._check_idle()
        return None

    def request_exit(self, action: str) -> None:
        """A handler raised L{SystemExit}: ask L{on_exit} to stop gracefully."""
        if self.on_exit is None:
            log.warn(
                "igor handler {action} raised SystemExit: nothing to stop "
                "(the hub serves no service)",
                action=action,
            )
            return
        self.on_exit(f"igor handler {action} raised SystemExit")

    # delivery -------------------------------------------------------------------

    def deliver(self, conn: Any, payload: bytes) -> None:
        """Write C{payload} to C{conn}, from any thread."""
        if _isInIOThread():
            conn.write(payload)
        else:
            self.reactor.callFromThread(conn.write, payload)

    def emit(self, payload: bytes, client_id: Any = None) -> None:
        """A process message: to every client, or to C{client_id}; any thread."""
        if self.stopped:
            return
        if client_id is None:
            if _isInIOThread():
                self._broadcast(payload)
            else:
                self.reactor.callFromThread(self._broadcast, payload)
            return
        self.deliver(self.client(client_id), payload)

    def client(self, client_id: Any) -> Any:
        """
        The connection of a client id (C{1} and C{"1"} are the same).

        @raise UnknownClientError: when none is connected.
        """
        conn = None
        if isinstance(client_id, (str, int)) and not isinstance(client_id, bool):
            conn = self.clients.get(normalize_client_id(client_id))
        if conn is None:
            raise UnknownClientError(client_id)
        return conn

    def _broadcast(self, payload: bytes) -> None:
        for conn in list(self.connections):
            conn.write(payload)

    # processes and shutdown ------------------------------------------------------

    def output(self, process_id: Any) -> ProcessOutput:
        """The output of process C{process_id} (one per id)."""
        output = self.outputs.get(process_id)
        if output is None:
            output = self.outputs[process_id] = ProcessOutput(self, process_id)
        return output

    def streams_done(self) -> Deferred:
        """
        Stop taking new streams; fire once no connection has a stream open
        (the WebSockets stay open).
        """
        self.draining = True
        d: Deferred = Deferred()
        self._idle_waiters.append(d)
        self._check_idle()
        return d

    def _check_idle(self) -> None:
        if self._idle_waiters and not any(conn.streams for conn in self.connections):
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def close_all(self) -> Deferred:
        """
        Stop taking new streams; close every WebSocket with 1001 (going away)
        once its streams finished.  Fires when all are closed; streams still
        open after C{shutdown_timeout} seconds are cancelled.
        """
        self.draining = True
        for conn in list(self.connections):
            if not conn.streams:
                conn.go_away()
        if not self.connections:
            return defer.succeed(None)
        if self._drained is None:
            self._drained = Deferred()
            self._force_call = self.reactor.callLater(
                self.shutdown_timeout, self._force
            )
        d: Deferred = Deferred()
        self._drained.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _force(self) -> None:
        self._force_call = None
        log.warn(
            "igor: {n} WebSocket(s) still open after {t}s: closing them",
            n=len(self.connections),
            t=self.shutdown_timeout,
        )
        for conn in list(self.connections):
            conn.abort()
            self.detach(conn)

    def _finish_drain(self) -> None:
        drained, self._drained = self._drained, None
        if self._force_call is not None and self._force_call.active():
            self._force_call.cancel()
        self._force_call = None
        if drained is not None:
            drained.callback(None)


class IgorService(Service):
    """
    Starts the bridge's Igor processes with the service; L{drain} lets open
    streams finish, L{stopService} closes the WebSockets with 1001 (going
    away) once their streams finished (the production shutdown calls both,
    in that order, within C{shutdown_timeout}).

    Thread processes get C{process_id}, C{output}, C{scope} and C{sessions}
    before they start and run as daemon threads.  Callables are called with
    their output in the reactor; what they return is stopped with the
    service (C{.stop()}, e.g. a L{LoopingCall}, or a L{Deferred}, cancelled).
    """

    name = "igor-processes"

    def __init__(self, hub: Hub, processes: Dict[Any, Any]) -> None:
        self.hub = hub
        self.processes = processes
        self._started: List[Any] = []

    def startService(self) -> None:
        """Start every process."""
        Service.startService(self)
        self.hub.stopped = False
        self.hub.draining = False
        for process_id, obj in self.processes.items():
            output = self.hub.output(process_id)
            if isinstance(obj, threading.Thread):
                prepare_thread(obj, process_id, output, self.hub)
                if obj.ident is None:
                    obj.start()
                continue
            try:
                result = obj(output)
            except Exception:
                log.failure(
                    "igor process {process_id} failed to start", process_id=process_id
                )
                continue
            self._started.append(result)

    def drain(self) -> Deferred:
        """Take no new streams; fire once the open ones finished."""
        return self.hub.streams_done()

    def stopService(self) -> Deferred:
        """Stop callable processes, then close WebSockets once their streams end."""
        Service.stopService(self)
        self.hub.stopped = True
        started, self._started = self._started, []
        for result in started:
            try:
                if isinstance(result, Deferred):
                    result.cancel()
                elif callable(getattr(result, "stop", None)) and getattr(
                    result, "running", True
                ):
                    result.stop()
            except Exception:
                log.failure("igor: stopping a process failed")
        return self.hub.close_all()


def prepare_thread(
    thread: threading.Thread, process_id: Any, output: Any, hub: Hub
) -> None:
    """Set a process thread's attributes (as Igor does) and make it a daemon."""
    thread.process_id = process_id  # type: ignore[attr-defined]
    thread.output = output  # type: ignore[attr-defined]
    thread.scope = hub.scope  # type: ignore[attr-defined]
    thread.sessions = hub.sessions  # type: ignore[attr-defined]
    if thread.ident is None:
        thread.daemon = True
