"""
One bgpy connection (L{BgpyProtocol}), in either wire format: it splits
bytes into messages, carries out the decisions of L{twistbridge.bgpy._core}
over the task runtime (L{twistbridge.bgpy._runtime}), waits for bgpy's
client's acknowledgements and enforces the timeouts.  Frames of the bgpy
format are paced by L{twistbridge.bgpy._pacing}; the factory and the
services are in L{twistbridge.bgpy._service}.

This module is over 400 lines: L{BgpyProtocol} is one state machine (the
queue of messages, the reading that pauses and resumes with it, the
serving loop that answers them in order); split, its halves would share
every attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Union

from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistbridge.bgpy._core import (
    BgpyError,
    FrameDecoder,
    Message,
    MessageType,
    ack,
    detect_format,
    encode_bgpy,
    error_message,
    ok_message,
)
from twistbridge.bgpy._jsonlines import LineDecoder, encode_json, parse_json_line
from twistbridge.bgpy._pacing import Pacer
from twistbridge.bgpy._pickle import decode_frame
from twistbridge.bgpy._runtime import TaskClient
from twistbridge.bgpy._tasks import (
    AUTH_FAILED,
    AUTH_OK,
    INIT_OK,
    NOT_INITIALIZED,
    Authenticate,
    Reject,
    RunTask,
    awaits_response,
    decide,
)
from twistbridge.logs import access_bgpy

if TYPE_CHECKING:
    from twistbridge.bgpy._service import BgpyFactory

__all__ = [
    "ITEM_OVERHEAD",
    "MAX_IN_FLIGHT",
    "OFFLOAD_DECODE",
    "OFFLOAD_FRAME",
    "PRE_AUTH_LIMIT",
    "REFUSAL_ACK_TIMEOUT",
    "BgpyProtocol",
    "pre_auth_limit",
]

log = Logger(namespace="twistbridge.bgpy")

OFFLOAD_DECODE = 256 * 1024
"""JSON lines at least this big are parsed in a thread, not in the reactor."""

OFFLOAD_FRAME = 32 * 1024
"""
bgpy frames at least this big are vetted and decoded in a thread: the
vetter walks a pickle in pure Python (about a microsecond per byte at
worst), so a frame under this size holds the reactor a few milliseconds.
"""

MAX_IN_FLIGHT = 32
"""EXEC tasks one connection may have queued before its reading waits."""

PRE_AUTH_LIMIT = 4096
"""
The largest message (bgpy frame body or JSON line) accepted before AUTH
when a token is configured: a bgpy client's AUTH frame with a token of
L{twistbridge.bgpy.token_create} is about 300 bytes.  A longer token raises
it to twice the token's length plus 1 KiB (L{pre_auth_limit}).
"""

ITEM_OVERHEAD = 64
"""Bytes each queued message is counted for besides its own length."""


def pre_auth_limit(token: Optional[str]) -> int:
    """The message limit before AUTH for C{token} (see L{PRE_AUTH_LIMIT})."""
    if token is None:
        return PRE_AUTH_LIMIT
    return max(PRE_AUTH_LIMIT, 2 * len(token.encode("utf-8")) + 1024)


REFUSAL_ACK_TIMEOUT = 2.0
"""Seconds to wait for the acknowledgement of a refusal before closing."""

_CLOSED = object()

_JSON_EXEC_ACK = encode_json(ack(MessageType.EXEC))


def _answer(kind: str, reply: Any) -> Message:
    """The second response of a task run through the broker."""
    response = reply["response"]
    if response is not None:
        return Message(MessageType[response[0]], response[1])
    if reply["ok"]:
        return ok_message(f"{kind}_task sent no response.")
    return error_message(reply["message"])


class BgpyProtocol(Protocol):
    """
    One client connection, in either wire format.

    Messages of a connection are handled one after the other by L{_serve};
    L{dataReceived} only splits bytes into messages.

    @ivar format: C{"bgpy"}, C{"json"}, or L{None} before the first byte.
    @ivar authenticated: whether AUTH succeeded (or no token is set).
    @ivar peer: the client's address, for logs.
    """

    format: Optional[str] = None
    # A TCP (or TLS) transport, set from connectionMade on: also a producer
    # (pauseProducing) and abortable, more than the ITransport it is typed as.
    transport: Any

    def __init__(self, factory: BgpyFactory) -> None:
        self.factory = factory
        self.runtime = factory.runtime
        self.reactor = factory.reactor
        self.authenticated = self.runtime.token is None
        self.peer = ""
        self.inbox: DeferredQueue = DeferredQueue()
        self.decoder: Union[FrameDecoder, LineDecoder, None] = None
        self.lost = False
        self.paused = False
        self.pacer = Pacer(self.reactor)
        self._message_timer: Any = None
        self._idle_timer: Any = None
        self._complained = False
        self.in_flight: List[Deferred] = []
        self._parked = False
        self._quiet_client = TaskClient(self, False)
        self.queued = 0
        self.in_flight_bytes = 0
        self._size = 0

    # connection events ------------------------------------------------------

    def connectionMade(self) -> None:
        """Start serving this connection."""
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self._arm_idle()
        d = defer.ensureDeferred(self._serve())
        d.addErrback(self._crashed)

    def read_limit(self) -> int:
        """
        Bytes this connection may hold queued (received, not yet handled)
        before its reading pauses: the message limit, or the limit before
        AUTH (L{pre_auth_limit}) until the client authenticated.
        """
        if self.authenticated:
            return self.factory.settings.max_message_size
        return pre_auth_limit(self.runtime.token)

    def dataReceived(self, data: bytes) -> None:
        """Split into messages and queue them for L{_serve}."""
        if self.decoder is None:
            self.format = detect_format(data[:1])
            limit = self.read_limit()
            self.decoder = (
                FrameDecoder(limit) if self.format == "bgpy" else LineDecoder(limit)
            )
            if not self.authenticated:
                self.decoder.note = " before AUTH"
        if self._idle_timer is not None:
            self._cancel(self._idle_timer)
            self._idle_timer = None
        self._split(data)

    def _split(self, data: bytes) -> None:
        """
        Feed the decoder; queue what it completes; pause reading when the
        bytes held reach L{read_limit}.  Before AUTH, one message at a time
        is split off (the next one is split once it has been handled, under
        the limit then in force).
        """
        decoder = self.decoder
        assert decoder is not None
        fast = self._parked and self.format == "json"
        most = None if self.authenticated else 1
        item: Union[bytes, Message, BgpyError]
        for item in decoder.feed(data, most):
            if fast and not self.inbox.pending and type(item) is bytes:
                # Nothing queued before it: handle a JSON line now if it
                # needs no waiting (most EXECs), without the queue.
                if len(item) < OFFLOAD_DECODE:
                    item = parse_json_line(item)
                    if type(item) is Message and self._handle_now(item):
                        continue
            if type(item) is bytes:
                self.queued += len(item) + ITEM_OVERHEAD
            self.inbox.put(item)
        if self._message_timer is not None:
            self._cancel(self._message_timer)
            self._message_timer = None
        if decoder.failed:
            self.transport.pauseProducing()
            return
        held = self.queued + decoder.buffered
        if not self.paused and (
            held >= self.read_limit() or (most is not None and self.inbox.pending)
        ):
            self.paused = True
            self.transport.pauseProducing()
        self._arm_message_timer()

    def _arm_message_timer(self) -> None:
        # The client has message_timeout to complete a message it started,
        # counted while we read: not while we hold its bytes unread.
        decoder = self.decoder
        if (
            decoder is not None
            and decoder.pending
            and not decoder.failed
            and not self.paused
            and not self.lost
            and self._message_timer is None
        ):
            self._message_timer = self.reactor.callLater(
                self.factory.settings.message_timeout, self._message_timed_out
            )

    def _wanted(self) -> None:
        """
        The next message is wanted and none is queued: split it off what
        the decoder holds, or read on.
        """
        decoder = self.decoder
        if decoder is None or decoder.failed or self.lost:
            return
        if decoder.buffered:
            self._split(b"")
        if self.paused and not self.inbox.pending:
            self._resume()

    def _taken(self, item: Any) -> None:
        """An item left the queue: read on once few enough bytes are held."""
        if type(item) is bytes:
            self.queued -= len(item) + ITEM_OVERHEAD
        decoder = self.decoder
        if (
            self.paused
            and self.authenticated
            and decoder is not None
            and not decoder.failed
            and not self.lost
            and self.queued + decoder.buffered < self.read_limit() // 2
        ):
            self._resume()

    def _resume(self) -> None:
        self.paused = False
        self.transport.resumeProducing()
        self._arm_message_timer()

    def _authenticated(self) -> None:
        """AUTH succeeded: the full limits apply from the next message on."""
        self.authenticated = True
        if self.decoder is not None:
            self.decoder.max_size = self.read_limit()
            self.decoder.note = ""

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        """Stop timers; wake L{_serve} so it ends."""
        self.lost = True
        self._cancel(self._message_timer)
        self._cancel(self._idle_timer)
        if (
            self.decoder is not None
            and self.decoder.pending
            and not self.decoder.failed
        ):
            log.info(
                "bgpy: {peer}: connection closed in the middle of a message",
                peer=self.peer,
            )
        self.inbox.put(_CLOSED)

    # timers -------------------------------------------------------------------

    @staticmethod
    def _cancel(call: Any) -> None:
        if call is not None and call.active():
            call.cancel()

    def _arm_idle(self) -> None:
        timeout = self.factory.settings.idle_timeout
        if timeout and not self.lost:
            self._idle_timer = self.reactor.callLater(timeout, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        log.info("bgpy: {peer}: idle for too long, closing", peer=self.peer)
        self.transport.loseConnection()

    def _message_timed_out(self) -> None:
        self._message_timer = None
        if self.decoder is not None:
            self.decoder.failed = True
        self.transport.pauseProducing()
        seconds = self.factory.settings.message_timeout
        self.inbox.put(BgpyError(f"Message incomplete after {seconds:g} s.", True))

    # the serving loop -----------------------------------------------------------

    def _crashed(self, failure: Failure) -> None:
        log.failure("bgpy: {peer}: internal error", failure, peer=self.peer)
        if not self.lost:
            self.transport.abortConnection()

    async def _next(self, timeout: Optional[float] = None) -> Any:
        """The next queued item, or L{_CLOSED} (also after C{timeout})."""
        if self.lost and not self.inbox.pending:
            return _CLOSED
        if not self.inbox.pending:
            self._wanted()
        d = self.inbox.get()
        if timeout:
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda *a: _CLOSED)
        item = await d
        self._taken(item)
        return item

    async def _serve(self) -> None:
        while True:
            if self.format == "bgpy":
                self._arm_idle_between_messages()
            self._parked = True
            item = await self._next()
            self._parked = False
            self._cancel(self._idle_timer)
            if item is _CLOSED:
                return
            if isinstance(item, BgpyError) and item.close:
                # broken framing, too big, too slow
                await self._refuse(item, both_slots=False)
                return
            self._size = len(item) if type(item) is bytes else 0
            message = (
                item
                if isinstance(item, (Message, BgpyError))
                else await self._decode(item)
            )
            if isinstance(message, BgpyError):
                await self._refuse(message, both_slots=message.close)
                if message.close:
                    return
                continue
            self._received()
            if not await self._handle(message):
                return

    def _arm_idle_between_messages(self) -> None:
        self._cancel(self._idle_timer)
        self._arm_idle()

    async def _decode(self, item: bytes) -> Union[Message, BgpyError]:
        if self.format == "json":
            if len(item) >= OFFLOAD_DECODE:
                return await self.runtime.offloader.in_thread(parse_json_line, item)
            return parse_json_line(item)
        args = (item, self.runtime.allow_modules, self.authenticated)
        if len(item) >= OFFLOAD_FRAME:
            return await self.runtime.offloader.in_thread(decode_frame, *args)
        return decode_frame(*args)

    def _received(self) -> None:
        if self.format == "bgpy":
            self.pacer.received()

    def _complain(self, error: BgpyError) -> None:
        if not self._complained or not error.close:
            log.warn("bgpy: {peer}: {message}", peer=self.peer, message=error.message)
        self._complained = self._complained or error.close

    async def _refuse(self, error: BgpyError, both_slots: bool) -> None:
        """
        Answer a message that cannot be handled; close when fatal.

        A bgpy frame that framed well but did not decode (a refused global)
        is answered in both slots bgpy's client may read (the
        acknowledgement and the awaited response, its await flag being
        unknown), so that its client returns the error instead of hanging.
        """
        self._complain(error)
        self._received()
        await self._send(self.encode(error.to_message()))
        if error.close:
            if both_slots and self.format == "bgpy":
                await self._send(
                    self.encode(error.to_message(), second=True),
                    expect_ack=True,
                    timeout=REFUSAL_ACK_TIMEOUT,
                )
            self._close()

    def _handle_now(self, message: Message) -> bool:
        """
        On JSON lines, carry out an EXEC that needs no waiting (no second
        response awaited) at once: acknowledge and queue the task.

        @return: whether it was handled.
        """
        runtime = self.runtime
        if (
            runtime.cluster is not None
            or message.type is not MessageType.EXEC
            or not self.authenticated
            or awaits_response(message)
            or self.lost
        ):
            return False
        if runtime.idle and not runtime.machine.initialized:
            self._complain(BgpyError(NOT_INITIALIZED))
            self.transport.write(self.encode(error_message(NOT_INITIALIZED)))
            return True
        if not runtime.submit(self._quiet_client, message.args):
            return False  # a long queue: the slow path makes this client wait
        access_bgpy(self.peer, "EXEC", "OK", self.format or "")
        self.transport.write(_JSON_EXEC_ACK)
        return True

    def _track(self, outcome_d: Deferred) -> None:
        self.in_flight.append(outcome_d)
        self.in_flight_bytes += self._size
        outcome_d.addBoth(self._task_done, outcome_d, self._size)

    async def _handle(self, message: Message) -> bool:
        """Carry out one message; L{False} when the connection is done."""
        if self.format == "json" and self._handle_now(message):
            return not self.lost
        runtime = self.runtime
        decision = decide(message, self.authenticated, runtime.token)
        refused = isinstance(decision, Reject) or (
            isinstance(decision, Authenticate) and not decision.ok
        )
        access_bgpy(
            self.peer,
            getattr(message.type, "name", str(message.type)),
            "ERROR" if refused else "OK",
            self.format or "",
        )
        awaited = awaits_response(message)
        if isinstance(decision, RunTask) and runtime.cluster is not None:
            return await self._handle_shared(message, decision, awaited)
        if (
            isinstance(decision, RunTask)
            and decision.kind == "exec"
            and runtime.idle
            and not runtime.machine.initialized
        ):
            decision = Reject(BgpyError(NOT_INITIALIZED))
        if isinstance(decision, Reject):
            self._complain(decision.error)
            if awaited:
                await self._send(self.encode(ack(message.type)))
            await self._send(
                self.encode(decision.error.to_message(), second=awaited),
                expect_ack=awaited,
            )
            return not self.lost
        await_ack = self._start_send(self.encode(ack(message.type)))
        if isinstance(decision, Authenticate):
            if await_ack is not None:
                await await_ack
            if decision.ok:
                self._authenticated()
                await self._send(
                    self.encode(ok_message(AUTH_OK), True), expect_ack=True
                )
                return not self.lost
            log.warn("bgpy: {peer}: invalid client authentication", peer=self.peer)
            await self._send(
                self.encode(error_message(AUTH_FAILED), True), expect_ack=True
            )
            self._close()
            return False
        # RunTask: the task starts while the acknowledgement is paced.
        kind = decision.kind
        client = TaskClient(self, awaited and kind != "init")
        outcome_d = runtime.run(
            kind, client, decision.args, decision.refused or decision.tasks
        )
        if await_ack is not None:
            await await_ack
        if kind == "init":
            outcome = await outcome_d
            answer = (
                ok_message(INIT_OK) if outcome.ok else error_message(outcome.message)
            )
            if outcome.close:
                self._complain(BgpyError(outcome.message, True))
            await self._send(self.encode(answer, second=True), expect_ack=True)
            if outcome.close:
                self._close()
                return False
            return not self.lost
        if awaited:
            await self._send(await client.response, expect_ack=True)
        elif kind == "exec":
            # Nothing more to answer: go on reading while the task waits its
            # turn (tasks still run one at a time, in order), with a bound
            # on how many a connection may have queued, and on the bytes of
            # their messages (the decoded arguments wait with them).
            self._track(outcome_d)
            while self.in_flight and (
                len(self.in_flight) > MAX_IN_FLIGHT
                or self.in_flight_bytes > self.factory.settings.max_message_size
            ):
                await self.in_flight[0]
            return not self.lost
        await outcome_d
        if kind == "exit":
            return await self._after_exit(awaited)
        return not self.lost

    async def _handle_shared(
        self, message: Message, decision: RunTask, awaited: bool
    ) -> bool:
        """
        With a broker: the task runs on the instance holding the bgpy lease
        (perhaps this one).  An EXEC is acknowledged only once the state it
        left is stored in Redis; a failure is answered in place of the
        acknowledgement (or after it, when a second response is awaited).
        """
        kind = decision.kind
        cluster = self.runtime.cluster
        request = cluster.request(
            kind,
            decision.args,
            self.peer,
            awaited,
            decision.tasks,
            decision.refused.message if decision.refused is not None else None,
        )
        if kind == "exec":
            reply = await request
            if not reply["ok"]:
                self._complain(BgpyError(reply["message"]))
                if awaited:
                    await self._send(self.encode(ack(message.type)))
                await self._send(
                    self.encode(error_message(reply["message"]), second=awaited),
                    expect_ack=awaited,
                )
                return not self.lost
            await self._send(self.encode(ack(message.type)))
            if awaited:
                await self._send(
                    self.encode(_answer(kind, reply), True), expect_ack=True
                )
            return not self.lost
        await_ack = self._start_send(self.encode(ack(message.type)))
        if await_ack is not None:
            await await_ack
        reply = await request
        if kind == "init":
            answer = (
                ok_message(INIT_OK) if reply["ok"] else error_message(reply["message"])
            )
            if reply["close"]:
                self._complain(BgpyError(reply["message"], True))
            await self._send(self.encode(answer, second=True), expect_ack=True)
            if reply["close"]:
                self._close()
                return False
            return not self.lost
        if awaited:
            await self._send(self.encode(_answer(kind, reply), True), expect_ack=True)
        return await self._after_exit(awaited)

    def _task_done(self, result: Any, d: Deferred, size: int) -> Any:
        self.in_flight.remove(d)
        self.in_flight_bytes -= size
        return result

    async def _after_exit(self, acknowledged: bool) -> bool:
        """
        After EXIT, bgpy's client must see the connection end only once it
        is done: close after its acknowledgement of the last frame, or once
        it closed.  JSON-lines connections stay open (unless the server
        stops).
        """
        if self.format == "bgpy" and not acknowledged and not self.lost:
            await self._next(self.factory.settings.message_timeout)
        if self.format == "bgpy" or self.runtime.on_exit is not None:
            self._close()
        if self.runtime.on_exit is not None:
            self.runtime.on_exit()
            return False
        return self.format == "json" and not self.lost

    # writing --------------------------------------------------------------------

    def encode(self, message: Message, second: bool = False) -> bytes:
        """
        Encode for this connection's format (thread-safe).

        C{second} marks a second response: on the bgpy format its args get
        C{"await_response": False}, as bgpy's own server's answers have (its
        C{respond} goes through the same C{send} as a client's request).
        """
        if self.format == "json":
            return encode_json(message)
        if second and isinstance(message.args, dict):
            message = Message(message.type, {**message.args, "await_response": False})
        try:
            return encode_bgpy(message)
        except Exception as e:
            return encode_bgpy(error_message(f"Answer does not pickle: {e}."))

    def _start_send(self, data: bytes) -> Optional[Deferred]:
        """
        Write at once on JSON lines (L{None}); on the bgpy format, start a
        paced L{_send} and return its L{Deferred}.
        """
        if self.format != "bgpy":
            if not self.lost:
                self.transport.write(data)
            return None
        return defer.ensureDeferred(self._send(data))

    async def _send(
        self, data: bytes, expect_ack: bool = False, timeout: Optional[float] = None
    ) -> bool:
        """
        Write one encoded message.  On the bgpy format: when the L{Pacer}
        allows, and when C{expect_ack}, wait for the client's
        acknowledgement.

        @return: whether it was written (and acknowledged).
        """
        if self.lost:
            return False
        if self.format != "bgpy":
            self.transport.write(data)
            return True
        await self.pacer.wait()
        if self.lost:
            return False
        self.transport.write(data)
        self.pacer.sent()
        if not expect_ack:
            return True
        return await self._await_ack(timeout or self.factory.settings.message_timeout)

    async def _await_ack(self, timeout: float) -> bool:
        item = await self._next(timeout)
        if item is _CLOSED:
            if not self.lost:
                log.info("bgpy: {peer}: no acknowledgement, closing", peer=self.peer)
                self._close()
            return False
        message = item if isinstance(item, BgpyError) else await self._decode(item)
        self._received()
        if isinstance(message, BgpyError):
            self._complain(message)
            self._close()
            return False
        if message.type not in (MessageType.OK, MessageType.ERROR):
            self._complain(
                BgpyError(
                    f"Expected an acknowledgement, got '{message.type.name}'.", True
                )
            )
            self._close()
            return False
        return True

    def _close(self) -> None:
        if not self.lost:
            self.transport.loseConnection()
