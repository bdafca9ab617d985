"""
What a handler returns is read in one place, the offload layer: a plain
C{def} run in the thread pool that returns a L{Deferred} (or a coroutine) is
answered with what the L{Deferred} fires with, on every protocol, over real
sockets with each protocol's own client; a process handler that returns one
fails saying so.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import pytest
import pytest_twisted
import requests
import websocket
from izzati import Frontend
from jsonrpcclient import Ok, parse, request
from twisted.internet import defer, reactor, threads

from twistbridge import Bridge
from twistbridge.offload import Offloader, resolve
from twistbridge.web import BridgeSite

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
if APPS not in sys.path:
    sys.path.insert(0, APPS)  # the workers get our sys.path, so they find it too

import offload_app as app  # noqa: E402


class Later:
    """
    Deferreds handed out by thread handlers, fired by the test from the
    reactor: C{made} fires (in the reactor) once a handler returned one.
    """

    def __init__(self) -> None:
        self.pending: list = []
        self.made = defer.Deferred()

    def new(self) -> defer.Deferred:
        """In a pool thread: a Deferred the test fires later."""
        d = defer.Deferred()
        self.pending.append(d)
        reactor.callFromThread(self._made)
        return d

    def _made(self) -> None:
        made, self.made = self.made, defer.Deferred()
        made.callback(None)

    def fire(self, value) -> None:
        self.pending.pop(0).callback(value)


@pytest.fixture
def served():
    """A bridge whose handlers run in the thread pool and return Deferreds."""
    later = Later()
    bridge = Bridge(threads=2, processes=1, shutdown_timeout=5)

    def slow_echo(out, data, **kwargs):
        assert threading.current_thread().name.startswith("PoolThread-")
        out.send("started")
        d = later.new()
        d.addCallback(out.send)
        return d

    def rpc_later(x):
        return later.new().addCallback(lambda v: {"x": x, "v": v})

    def upload_later(text, data):
        return later.new().addCallback(lambda v: {"text": text, "v": v})

    async def coro():
        return "from a coroutine"

    def rpc_coroutine():
        return coro()

    bridge.igor_action("slow_echo", slow_echo, run_in="thread")
    bridge.rpc_function(rpc_later, run_in="thread")
    bridge.rpc_function(rpc_coroutine, run_in="thread")
    bridge.izzati(upload_later, run_in="thread")
    rt = bridge.runtime()
    rt.offloader.startService()
    port = reactor.listenTCP(
        0, BridgeSite(rt.root, bridge.settings), interface="127.0.0.1"
    )
    yield f"127.0.0.1:{port.getHost().port}", later
    pytest_twisted.blockon(port.stopListening())
    pytest_twisted.blockon(rt.offloader.stopService())


@pytest_twisted.ensureDeferred
async def test_igor_thread_handler_returning_a_deferred_keeps_its_stream_open(served):
    address, later = served

    def call(func, *args):  # websocket-client blocks: in a thread
        return threads.deferToThread(func, *args)

    ws = await call(websocket.create_connection, f"ws://{address}/ws")
    try:
        message = {"streamId": "s", "action": "slow_echo", "data": 1}
        made = later.made
        await call(ws.send, json.dumps(message))
        assert json.loads(await call(ws.recv)) == {"streamId": "s", "data": "started"}
        await made
        # The handler returned; its stream stays open until the Deferred
        # fires: a ping on the same connection is answered before any close.
        await call(ws.ping, b"open?")
        opcode, frame = await call(ws.recv_data_frame, True)
        assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"open?")
        later.fire("done")
        assert json.loads(await call(ws.recv)) == {"streamId": "s", "data": "done"}
        assert json.loads(await call(ws.recv)) == {"streamId": "s", "close": True}
    finally:
        await call(ws.close)


@pytest_twisted.ensureDeferred
async def test_jsonrpc_thread_method_returning_a_deferred_answers_its_result(served):
    address, later = served
    made = later.made
    answer = threads.deferToThread(
        requests.post,
        f"http://{address}/rpc",
        json=request("rpc_later", params=[7], id=1),
        timeout=10,
    )
    await made
    assert not answer.called
    later.fire("fired")
    response = await answer
    assert parse(response.json()) == Ok({"x": 7, "v": "fired"}, 1)


@pytest_twisted.ensureDeferred
async def test_jsonrpc_thread_method_returning_a_coroutine_is_awaited(served):
    address, _ = served
    response = await threads.deferToThread(
        requests.post,
        f"http://{address}/rpc",
        json=request("rpc_coroutine", id=2),
        timeout=10,
    )
    assert parse(response.json()) == Ok("from a coroutine", 2)


@pytest_twisted.ensureDeferred
async def test_izzati_thread_callback_returning_a_deferred_answers_its_result(served):
    address, later = served
    made = later.made
    answer = threads.deferToThread(Frontend(f"http://{address}/").send, {"a": "1"})
    await made
    assert not answer.called
    later.fire("fired")
    assert await answer == {"text": {"a": "1"}, "v": "fired"}


# the offloader alone: cancellation and the process pool ---------------------


@pytest_twisted.ensureDeferred
async def test_cancelling_a_call_cancels_the_deferred_its_thread_handler_returned():
    offloader = Offloader(threads=1, processes=1)
    offloader.startService()
    returned = []

    cancelled = []

    def handler():
        d = defer.Deferred(cancelled.append)
        returned.append(d)
        return d

    try:
        call = offloader.call(resolve(handler, "thread"))
        while not returned or offloader.stats()["threads"]["busy"]:
            await threads.deferToThread(lambda: None)
        call.cancel()
        with pytest.raises(defer.CancelledError):
            await call
        assert cancelled == returned
    finally:
        await offloader.stopService()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "func, kind",
    [(app.returns_a_deferred, "Deferred"), (app.returns_a_coroutine, "coroutine")],
)
async def test_a_process_handler_cannot_return_a_result_to_come(func, kind):
    offloader = Offloader(threads=1, processes=1)
    offloader.startService()
    try:
        with pytest.raises(TypeError) as raised:
            await offloader.call(resolve(func, "process"))
        assert str(raised.value) == (
            f"{func.__qualname__} returned a {kind}, but a run_in='process' "
            "handler runs in a worker process, which has no reactor to wait for "
            "it: return the value itself, or run the handler in the reactor or "
            "the thread pool"
        )
    finally:
        await offloader.stopService()
