"""
The Igor hub: one per bridge, shared by every WebSocket listener (C{/ws} on
the HTTP port and the standalone Igor port).

It holds what Igor keeps server-wide -- the clients and their sessions
(L{twistbridge.igor._clients}), the shared C{scope}, process outputs
(L{twistbridge.igor._processes}) -- reads each client message and hands it
to its stream (L{twistbridge.igor._streams}), and drains and closes the
connections when the server stops.

A connection, for the hub, is any object with a C{client_id}, a C{streams}
dict, C{write(payload)} (reactor thread), C{go_away()} and C{abort()}; the
autobahn protocol in L{twistbridge.igor._protocol} is the real one.

(Over 400 lines: dispatch, delivery and the drain all read the same
connection state; the parts that stand alone -- clients, streams,
processes, the broker -- are modules of their own.)
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.igor._broker import LocalBroker
from twistbridge.igor._clients import Clients
from twistbridge.igor._core import (
    INTRODUCE_SELF,
    SESSION_TIMEOUT,
    ProtocolError,
    UnknownClientError,
    encode_protocol_error,
    parse_message,
    unknown_action,
)
from twistbridge.igor._parse import INLINE_LIMIT, parse_large

# prepare_thread is imported from here by twistbridge.igor._compat.
from twistbridge.igor._processes import ProcessOutput, prepare_thread
from twistbridge.igor._sessions import SharedSessions
from twistbridge.igor._streams import Streams
from twistbridge.offload import Handler

__all__ = ["Hub", "prepare_thread"]

log = Logger(namespace="twistbridge.igor")

BUSY = ProtocolError(503, "Server is busy: message not handled, try again later")

_isInIOThread = threadable.isInIOThread


class Hub:
    """
    Igor's server-wide state and message dispatch.

    Client ids have one form (L{normalize_client_id}): automatic ids are
    the integers 1, 2, ... skipping every id that is connected or whose
    session is still within its takeover window.

    @ivar handlers: action name to L{Handler} (the bridge's registrations,
        read at each message, so late registrations count).
    @ivar ids: the clients and their sessions (L{Clients}); C{clients},
        C{sessions}, C{tokens}, C{session_timeout} and C{takeover} are its.
    @ivar streams: the stream calls (L{Streams}).
    @ivar scope: the dict shared by every handler and process.
    @ivar connections: every open connection.
    @ivar shutdown_timeout: seconds L{close_all} waits for streams to finish.
    @ivar inline_limit: messages larger than this many bytes are parsed in a
        pool thread (their connection's messages stay in order).
    @ivar broadcasts: process messages sent to every client so far.
    @ivar on_exit: called when a handler raises L{SystemExit}, with a line
        saying which: whoever serves the hub stops what it serves (the
        bridge's service, or the reactor when the bridge is the process);
        L{None}: the exit is only logged.
    @ivar broker: what the hub shares with other bridge instances
        (L{twistbridge.igor._broker}): broadcasts, sends to clients
        connected elsewhere, automatic ids, where processes run.  The
        default, L{LocalBroker}, is this process alone.
    @ivar shared_sessions: the sessions as the other instances see them
        (L{SharedSessions}), with a shared broker; L{None} without.
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
        broker: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.broker = LocalBroker() if broker is None else broker
        self.ids = Clients(reactor, session_timeout, takeover, self.broker.next_id)
        self.shared_sessions: Optional[SharedSessions] = (
            SharedSessions(self) if self.broker.shared else None
        )
        self.streams = Streams(self)
        self.handlers = handlers
        self.offloader = offloader
        self.shutdown_timeout = shutdown_timeout
        self.inline_limit = inline_limit
        self.on_exit = on_exit
        self.broadcasts = 0
        self.scope: Dict[str, Any] = {}
        self.connections: Set[Any] = set()
        self.outputs: Dict[Any, ProcessOutput] = {}
        self.draining = False
        self.stopped = False
        self._drained: Optional[Deferred] = None
        self._force_call: Any = None
        self._idle_waiters: List[Deferred] = []

    # the clients' state, kept by self.ids ----------------------------------

    @property
    def clients(self) -> Dict[Any, Any]:
        """Connected client id to its connection."""
        return self.ids.clients

    @property
    def sessions(self) -> Dict[Any, Dict[str, Any]]:
        """Client id to that client's session dict."""
        return self.ids.sessions

    @property
    def tokens(self) -> Dict[Any, str]:
        """Client id to its resume token (C{takeover="token"})."""
        return self.ids.tokens

    @property
    def takeover(self) -> str:
        """C{"name"} or C{"token"}: see L{twistbridge.igor._clients}."""
        return self.ids.takeover

    @property
    def session_timeout(self) -> float:
        """Seconds a session outlives its client."""
        return self.ids.session_timeout

    @session_timeout.setter
    def session_timeout(self, seconds: float) -> None:
        self.ids.session_timeout = seconds

    @property
    def _expiry(self) -> Dict[Any, Any]:
        # (read by twistbridge.igor._compat: IgorServer.timeouts)
        return self.ids.expiry

    # connections ---------------------------------------------------------

    def attach(self, conn: Any) -> None:
        """A WebSocket opened: give it a fresh numeric client id and session."""
        conn.streams = {}
        conn.inflight = 0
        conn.parsing = None
        conn.refused = 0
        self.ids.add(conn)
        self.broker.joined(conn.client_id)
        self.connections.add(conn)
        if self.draining:
            conn.go_away()

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
        self.streams.close(conn)
        client_id = conn.client_id
        leaving = self.ids.clients.get(client_id) is conn
        if leaving:
            self.broker.left(client_id)
        self.ids.remove(conn)
        if leaving and self.shared_sessions is not None:
            self.shared_sessions.left(client_id)
        if self._drained is not None and not self.connections:
            self._finish_drain()
        self._check_idle()

    def client(self, client_id: Any) -> Any:
        """
        The connection of a client id (C{1} and C{"1"} are the same).

        @raise UnknownClientError: when none is connected.
        """
        return self.ids.client(client_id)

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
        self.resume(conn, waiting)
        return None

    def resume(self, conn: Any, waiting: Deque[bytes]) -> None:
        """
        Dispatch the messages that waited (for a large message's parse, or
        an C{introduce_self} the broker settles), and read again: undoes
        the one C{pause_reading()} of whoever made them wait.  A message that
        makes the rest wait again leaves them waiting.
        """
        while waiting and conn in self.connections and conn.parsing is None:
            payload = waiting.popleft()
            if len(payload) > self.inline_limit:
                conn.resume_reading()
                self._parse_off(conn, payload)
                parsing: Any = conn.parsing
                parsing.extend(waiting)
                return
            self.dispatch(conn, parse_message(payload))
        if conn.parsing is not None:
            conn.parsing.extend(waiting)
        conn.resume_reading()

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
        self.streams.start(conn, request.stream_id, handler, request.data)
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
        C{introduce_self}: see L{Clients.introduce} (and L{SharedSessions}
        with a shared broker); a refusal is answered.
        """
        if self.shared_sessions is not None:
            return self.shared_sessions.introduce(conn, data)
        old_id = conn.client_id
        refusal = self.ids.introduce(conn, data)
        if refusal is not None:
            self.refuse(conn, refusal)
        elif conn.client_id != old_id:
            self.renamed(old_id, conn.client_id)
        return None

    def renamed(self, old_id: Any, new_id: Any) -> None:
        """A client of this instance is C{new_id} now: tell the broker."""
        self.broker.left(old_id)
        self.broker.joined(new_id)

    def stream_ended(self, conn: Any, exit_action: Optional[str]) -> None:
        """
        A stream of C{conn} closed; C{exit_action} names its handler when it
        raised L{SystemExit}.
        """
        if exit_action is not None:
            self.request_exit(exit_action)
        elif self._drained is not None and not conn.streams:
            conn.go_away()
        self._check_idle()

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
        """
        A process message: to every client, or to C{client_id}; any thread.
        Both go through the L{broker}: every client of every instance, and
        C{client_id} wherever it is connected.

        @raise UnknownClientError: no instance has C{client_id}.
        """
        if self.stopped:
            return
        if client_id is None:
            if _isInIOThread():
                self._broadcast_all(payload)
            else:
                self.reactor.callFromThread(self._broadcast_all, payload)
            return
        try:
            conn = self.client(client_id)
        except UnknownClientError:
            self.broker.send(client_id, payload)
        else:
            self.deliver(conn, payload)

    def start_broker(self) -> None:
        """Start the L{broker} (when the processes' service starts)."""
        self.broker.start(self._broadcast, self._deliver_local)

    def _deliver_local(self, client_id: Any, payload: bytes) -> bool:
        # A message from another instance to a client of ours (reactor).
        if self.stopped:
            return False
        try:
            conn = self.client(client_id)
        except UnknownClientError:
            return False
        conn.write(payload)
        return True

    def _broadcast_all(self, payload: bytes) -> None:
        self._broadcast(payload)
        self.broker.publish(payload)

    def _broadcast(self, payload: bytes) -> None:
        # Framed once for all (a connection that can prepare a message
        # writes the same frame to each), not once per client.
        self.broadcasts += 1
        prepared = None
        for conn in list(self.connections):
            write_prepared = getattr(conn, "write_prepared", None)
            if write_prepared is None:
                conn.write(payload)
                continue
            if prepared is None:
                prepared = conn.prepare(payload)
            write_prepared(prepared, len(payload))

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

        def relay(result: Any) -> Any:
            d.callback(None)
            return result

        self._drained.addBoth(relay)
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
