"""
L{BridgeTestClient}: a user's L{twistbridge.Bridge} served in memory, for
tests -- no sockets, no threads (unless asked for), no real time.

The client builds the bridge's L{twistbridge.runtime.Runtime} on a
L{TestReactor} (a C{MemoryReactorClock}) with an L{InlineOffloader}, starts
the protocol services (Igor processes, bgpy's C{init_task}) and connects
clients to the listeners' own factories -- L{twistbridge.web.BridgeSite}
with its L{twistbridge.request.BridgeRequest}s, the standalone
L{twistbridge.igor._protocol.IgorFactory}, the
L{twistbridge.bgpy._service.BgpyFactory} -- each wrapped in the
connection tracker a listener uses, over C{twisted.test.iosim} transports.
The bytes on those connections are the bytes a socket would carry.

Over 400 lines: L{BridgeTestClient} is the one object a test holds, so it
carries one method per kind of call; the protocols' own client code is in
L{twistbridge.testing._http}, L{twistbridge.testing._igor},
L{twistbridge.testing._bgpy} and L{twistbridge.testing._raw}.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import urlencode

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.app import Bridge
from twistbridge.bgpy._service import BgpyFactory
from twistbridge.bgpy._service import build_services as bgpy_services
from twistbridge.igor._processes import build_services as igor_services
from twistbridge.igor._protocol import IgorFactory
from twistbridge.limits import HTTP_REFUSAL
from twistbridge.registry import Registry
from twistbridge.runtime import Runtime
from twistbridge.service import ConnectionTracker
from twistbridge.testing._bgpy import BgpyTestConnection
from twistbridge.testing._http import FileSpec, Response, make_agent, multipart_body
from twistbridge.testing._http import request as http_request
from twistbridge.testing._igor import IgorTestConnection
from twistbridge.testing._memory import Pumps
from twistbridge.testing._offload import InlineOffloader
from twistbridge.testing._raw import RawConnection
from twistbridge.testing._reactor import TestReactor
from twistbridge.web import BridgeSite

__all__ = ["BridgeTestClient", "RawConnection", "RpcError"]

#: Seconds L{BridgeTestClient.flush} waits for real pool threads or
#: processes (C{real_pools=True}) before giving up.
REAL_POOL_TIMEOUT = 30.0

HTTP_PORT = 5020
IGOR_PORT = 5678
BGPY_PORT = 54321


class RpcError(Exception):
    """
    A JSON-RPC error answer.

    @ivar code: the error's C{code}.
    @ivar message: its C{message}.
    @ivar data: its C{data}, or L{None}.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        Exception.__init__(self, f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class BridgeTestClient:
    """
    A bridge served in memory::

        client = BridgeTestClient(bridge)
        client.upload(text={"name": "a"}, files={"file": ("a.txt", b"hi")})
        client.rpc("add", 1, 2)                     # 3
        ws = client.igor(); ws.call("echo", "hi")
        client.bgpy().call("EXEC", command="increase", value_change=1)
        client.advance(10)                          # timeouts, processes
        client.close()

    Everything runs in the calling thread: each method flushes (runs what
    is due now and moves the bytes of every connection until nothing moves)
    before it returns.  Time moves only with L{advance}.

    @param bridge: the app (a L{twistbridge.Bridge}, or any
        L{twistbridge.registry.Registry}).  Its settings apply, as under
        C{twistd bridge}.
    @param real_pools: run thread handlers in the bridge's real thread pool
        and process handlers in real child processes (L{InlineOffloader});
        L{flush} then waits for them, up to L{REAL_POOL_TIMEOUT} seconds.
    @param start: start the services now (else call L{start}).

    @ivar reactor: the L{TestReactor}.
    @ivar runtime: the L{Runtime} built for this client.  While the client
        is open it is also what C{bridge.runtime()} (and so
        C{bridge.offloader}, C{bridge.rpc}) returns, as under C{twistd
        bridge} -- unless the bridge was already being served when the
        client was made; L{close} puts that back.
    @ivar offloader: the L{InlineOffloader}.
    """

    __test__ = False

    def __init__(
        self, bridge: Registry, real_pools: bool = False, start: bool = True
    ) -> None:
        self.bridge = bridge
        self.reactor = TestReactor()
        if threadable.ioThread is None:
            # What a running reactor does: the test's thread is the reactor
            # thread, so that handlers run in it write as reactor code does.
            threadable.registerAsIOThread()
        s = bridge.settings
        self.offloader = InlineOffloader(
            self.reactor,
            real_pools=real_pools,
            threads=s.threads,
            processes=s.processes,
            call_timeout=s.call_timeout,
            shutdown_timeout=s.shutdown_timeout,
            max_queued=s.max_queued,
        )
        self.runtime = Runtime(bridge, reactor=self.reactor, offloader=self.offloader)
        # Handlers may reach the serving runtime through the bridge
        # (bridge.offloader, bridge.rpc): while this client is open, that is
        # this one, unless the bridge is already served for real.
        self._uses = ExitStack()
        if isinstance(bridge, Bridge):
            self._uses.enter_context(bridge.use_runtime(self.runtime))
        self.pumps = Pumps(self.reactor)
        self.services = MultiService()
        self._factories: Dict[str, Any] = {}
        self._agent = make_agent(self.reactor, self._connect_http)
        self._rpc_id = 0
        self.started = False
        if start:
            self.start()

    # lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Check the registrations, start the services (as the bridge's service does)."""
        if self.started:
            return
        self.started = True
        self.bridge.check()
        rt = self.runtime
        self.offloader.setServiceParent(self.services)
        processes = {
            pid: _on_clock(obj, self.reactor)
            for pid, obj in rt.registry.igor_process_objects.items()
        }
        for svc in [*igor_services(rt.igor_hub, processes), *bgpy_services(rt.bgpy)]:
            svc.setServiceParent(self.services)
        self.services.startService()
        self.flush()

    def close(self) -> None:
        """
        Stop the services as a graceful shutdown does (Igor sockets closed
        with 1001, bgpy's C{exit_task} run), then drop what is still open.
        """
        self._uses.close()
        if not self.started:
            return
        self.started = False
        d = defer.maybeDeferred(self.services.stopService)
        self.settle(self.bridge.settings.shutdown_timeout)
        for factory in self._factories.values():
            factory.abort_all()
        self.flush()
        for factory in self._factories.values():
            factory.doStop()
        self._factories.clear()
        if not d.called:
            d.cancel()
        d.addErrback(lambda f: None)

    def __enter__(self) -> BridgeTestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # time ------------------------------------------------------------------

    def flush(self) -> None:
        """
        Run everything due now: calls from handlers (L{TestReactor.callFromThread}),
        C{callLater(0)} calls, and the bytes of every connection, until
        nothing is left to do.  With C{real_pools}, wait for the calls the
        real pools are running.

        @raise RuntimeError: it never settles (calls scheduling calls forever).
        @raise TimeoutError: real pool calls still run after
            L{REAL_POOL_TIMEOUT} seconds.
        """
        reactor = self.reactor
        deadline: Optional[float] = None
        for _ in range(100_000):
            moved = reactor.run_thread_calls() > 0
            # A Clock keeps its calls sorted: the first is the next due.
            calls = reactor.getDelayedCalls()
            if calls and calls[0].getTime() <= reactor.seconds():
                reactor.advance(0)
                moved = True
            if self.pumps.pump():
                moved = True
            if moved:
                continue
            if not (self.offloader.real_pools and self.offloader.pending):
                return
            if deadline is None:
                deadline = time.monotonic() + REAL_POOL_TIMEOUT
            elif time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.offloader.pending} handler call(s) still running in "
                    f"the real pools after {REAL_POOL_TIMEOUT} s"
                )
            reactor.run_thread_calls(wait=0.05)
        raise RuntimeError("flush() did not settle: calls keep scheduling calls")

    def advance(self, seconds: float) -> None:
        """
        Move the clock C{seconds} forward, stopping at every timer on the way
        (timeouts, L{LoopingCall}s, the Igor takeover window) and flushing
        after each, so that what a timer sends is delivered before the next.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        reactor = self.reactor
        target = reactor.seconds() + seconds
        self.settle(seconds)
        reactor.advance(max(0.0, target - reactor.seconds()))
        self.flush()

    def settle(self, window: float) -> None:
        """
        Move the clock to each timer due within C{window} seconds from now,
        one after the other, flushing after each; no further.  (What a
        paced protocol needs to deliver its answers.)
        """
        reactor = self.reactor
        limit = reactor.seconds() + window
        self.flush()
        while True:
            calls = reactor.getDelayedCalls()
            step = calls[0].getTime() if calls else None
            if step is None or step > limit:
                return
            reactor.advance(max(0.0, step - reactor.seconds()))
            self.flush()

    def result(self, d: Deferred, what: str = "the call") -> Any:
        """
        Flush, then the result of C{d} (raising its failure).  The result
        is taken out of C{d}: ask once.

        @raise LookupError: C{d} has not fired (advance the clock if it
            waits for a timer).
        """
        self.flush()
        if not d.called or d.paused:
            raise LookupError(f"{what} has no answer yet (is it waiting for time?)")
        box: List[Any] = []
        d.addBoth(box.append)  # takes the result (a failure is not left unhandled)
        outcome = box[0]
        if isinstance(outcome, Failure):
            outcome.raiseException()
        return outcome

    # connections -------------------------------------------------------------

    def _listener(self, name: str) -> Any:
        factory = self._factories.get(name)
        if factory is not None:
            return factory
        s = self.bridge.settings
        rt = self.runtime
        refusal = HTTP_REFUSAL
        if name == "http":
            inner: Any = BridgeSite(rt.root, s, reactor=self.reactor)
        elif name == "igor":
            inner = IgorFactory(rt.igor_hub, s, reactor=self.reactor)
            inner.allowed_host = tuple(s.allowed_host)
        else:
            inner = BgpyFactory(rt.bgpy, reactor=self.reactor)
            refusal = b""
        factory = ConnectionTracker(
            inner,
            self.reactor,
            max_connections=s.max_connections,
            max_connections_per_client=s.max_connections_per_client,
            refusal=refusal,
            name=name,
        )
        factory.doStart()
        self._factories[name] = factory
        return factory

    def _connect_http(self, protocol: Any) -> None:
        self.pumps.connect(self._listener("http"), protocol, port=HTTP_PORT)

    # HTTP --------------------------------------------------------------------

    def http_deferred(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, Union[str, List[str]]]] = None,
        chunked: bool = False,
    ) -> Deferred:
        """L{http} without waiting: a L{Deferred} of the L{Response}."""
        url = f"http://127.0.0.1:{HTTP_PORT}{path}"
        d = http_request(self._agent, method, url, body, headers, chunked)
        self.flush()
        return d

    def http(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, Union[str, List[str]]]] = None,
        chunked: bool = False,
    ) -> Response:
        """
        One HTTP/1.1 request on a new connection, by Twisted's own client:
        C{client.http("GET", "/health")}.  Headers name one value or a
        list; C{chunked} sends the body with chunked transfer encoding.
        """
        d = self.http_deferred(method, path, body, headers, chunked)
        return self.result(d, f"{method} {path}")

    def upload(
        self,
        text: Optional[Mapping[str, Any]] = None,
        files: Optional[Mapping[str, FileSpec]] = None,
        path: str = "/",
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """
        An izzati upload, as izzati's C{Frontend} sends it: form fields
        (C{text}) and files (name to C{(filename, bytes)}) as
        C{multipart/form-data}; without files, a urlencoded form.
        """
        if files:
            body, ctype = multipart_body(text or {}, files)
        else:
            body = urlencode(dict(text or {})).encode("ascii")
            ctype = "application/x-www-form-urlencoded"
        return self.http("POST", path, body, {"Content-Type": ctype, **(headers or {})})

    # JSON-RPC ----------------------------------------------------------------

    def rpc_request(
        self,
        payload: Any,
        path: str = "/rpc",
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """POST C{payload} (encoded as JSON unless it is C{bytes}) to C{path}."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.http(
            "POST", path, body, {"Content-Type": "application/json", **(headers or {})}
        )

    def _message(
        self, method: str, params: Sequence[Any], kw: Dict[str, Any]
    ) -> Dict[str, Any]:
        if params and kw:
            raise TypeError("JSON-RPC params are positional or named, not both")
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params or kw:
            message["params"] = list(params) if params else kw
        return message

    def rpc(self, method: str, *params: Any, _path: str = "/rpc", **kw: Any) -> Any:
        """
        Call C{method} with positional or named params; its result.

        @raise RpcError: the answer is an error.
        """
        self._rpc_id += 1
        message = self._message(method, params, kw)
        message["id"] = self._rpc_id
        answer = self.rpc_request(message, _path)
        data = answer.json()
        if "error" in data:
            e = data["error"]
            raise RpcError(e.get("code"), e.get("message"), e.get("data"))
        return data["result"]

    def notify(
        self, method: str, *params: Any, _path: str = "/rpc", **kw: Any
    ) -> Response:
        """Send a notification (no id); the HTTP answer."""
        return self.rpc_request(self._message(method, params, kw), _path)

    def batch(self, calls: Sequence[Any], path: str = "/rpc") -> Any:
        """
        Send a batch: each call is C{(method, params)} (C{params} a list or
        dict; its id is its place in the batch, from 1) or a whole message dict (sent as given).
        Returns the parsed answer (a list, or L{None} for an empty body).
        """
        messages = []
        for call in calls:
            if isinstance(call, dict):
                messages.append(call)
                continue
            method, params = call
            messages.append(
                {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": params,
                    "id": len(messages) + 1,
                }
            )
        answer = self.rpc_request(messages, path)
        return answer.json() if answer.body else None

    # Igor and bgpy -------------------------------------------------------------

    def igor(
        self,
        origin: Optional[str] = None,
        standalone: bool = False,
        path: str = "/ws",
        headers: Optional[Dict[str, str]] = None,
    ) -> IgorTestConnection:
        """
        Open an Igor WebSocket: on C{/ws} of the HTTP port, or (C{standalone})
        on the Igor port.  C{origin} is the browser's C{Origin} header
        (L{None}: none, as a desktop client sends).  A refused handshake
        leaves L{IgorTestConnection.status} at the refusal's code.
        """
        if standalone:
            url, name, port = f"ws://127.0.0.1:{IGOR_PORT}/", "igor", IGOR_PORT
        else:
            url, name, port = f"ws://127.0.0.1:{HTTP_PORT}{path}", "http", HTTP_PORT
        conn = IgorTestConnection(self, url, origin, headers)
        self.pumps.connect(self._listener(name), conn.protocol, port=port)
        self.flush()
        return conn

    def bgpy(self, format: str = "json") -> BgpyTestConnection:
        """Connect to the bgpy port; C{format} is C{"json"} or C{"bgpy"}."""
        conn = BgpyTestConnection(self, format)
        self.pumps.connect(self._listener("bgpy"), conn.protocol, port=BGPY_PORT)
        self.flush()
        return conn

    def connect(self, listener: str = "http") -> RawConnection:
        """
        A connection to C{listener} (C{"http"}, C{"igor"}, C{"bgpy"}) that
        sends and reads bytes as they are: a slow client, a malformed
        request, a half-sent message.
        """
        conn = RawConnection(self)
        port = {"http": HTTP_PORT, "igor": IGOR_PORT}.get(listener, BGPY_PORT)
        self.pumps.connect(self._listener(listener), conn.protocol, port=port)
        self.flush()
        return conn

    def raw(self, listener: str, data: bytes) -> bytes:
        """
        Send C{data} on a new connection to C{listener}; everything the
        server wrote back by the time nothing moves.
        """
        conn = self.connect(listener)
        conn.write(data)
        return conn.received


def _on_clock(obj: Any, clock: Any) -> Any:
    """
    An Igor process as the test client starts it: a callable's
    L{LoopingCall}, started on the global reactor, is moved onto the test
    clock (same interval, next call one interval from now).  Threads are
    left as they are.
    """
    if isinstance(obj, threading.Thread) or not callable(obj):
        return obj

    def start(output: Any) -> Any:
        result = obj(output)
        if (
            isinstance(result, LoopingCall)
            and result.running
            and result.clock is not clock
        ):
            interval = result.interval
            assert interval is not None  # a running LoopingCall has one
            result.stop()
            result.clock = clock
            result.start(interval, now=False)
        return result

    return start
