"""The hub with fake connections and a clock: sessions, streams, drain, processes."""

import json
import threading

import pytest
import pytest_twisted
from fakes import FakeConn, FakeOffloader, FakeReactor, attach, echo, message
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor

from twistbridge.igor import StreamClosedError, UnknownClientError
from twistbridge.igor._hub import Hub
from twistbridge.igor._streams import MAX_INFLIGHT
from twistbridge.offload import Offloader, resolve


def capture(out, data, session, scope, client_id):
    out.send([client_id, sorted(session), sorted(scope)])


def exit_handler(out, data, **kwargs):
    out.send("bye")
    raise SystemExit()


HANDLERS = {
    "echo": resolve(echo, "reactor"),
    "capture": resolve(capture, "reactor"),
    "exit": resolve(exit_handler, "reactor"),
    "slow": resolve(echo, "thread"),
}


@pytest.fixture
def exits():
    """What the hub's on_exit callback was called with."""
    return []


@pytest.fixture
def hub(exits):
    return Hub(
        HANDLERS,
        FakeOffloader(),
        reactor=FakeReactor(),
        shutdown_timeout=5,
        on_exit=exits.append,
    )


def test_numeric_client_ids_and_kwargs(hub):
    a, b = attach(hub), attach(hub)
    assert (a.client_id, b.client_id) == (1, 2)
    hub.scope["shared"] = True
    hub.receive(b, message("capture"))
    assert b.written == [
        {"streamId": "s", "data": [2, [], ["shared"]]},
        {"streamId": "s", "close": True},
    ]


def introduce(hub, conn, name):
    hub.receive(conn, message("introduce_self", {"client_id": name}))


def test_session_taken_over_within_ten_seconds(hub):
    a = attach(hub)
    introduce(hub, a, "alice")
    assert a.written == []  # introduce_self answers nothing, as in Igor
    session = hub.sessions["alice"]
    session["k"] = 1
    hub.detach(a)
    hub.reactor.advance(9.9)
    b = attach(hub)
    introduce(hub, b, "alice")
    assert hub.sessions["alice"] is session
    assert b.client_id == "alice" and hub.clients["alice"] is b
    assert b.client_id not in (1, 2) and 2 not in hub.sessions
    hub.reactor.advance(1)  # the cancelled expiry does not remove it later
    assert hub.sessions["alice"] == {"k": 1}


def test_session_not_taken_over_after_ten_seconds(hub):
    a = attach(hub)
    introduce(hub, a, "alice")
    hub.sessions["alice"]["k"] = 1
    hub.detach(a)
    hub.reactor.advance(10.0)
    assert "alice" not in hub.sessions
    b = attach(hub)
    introduce(hub, b, "alice")
    assert hub.sessions["alice"] == {}


def test_renaming_keeps_current_session_and_refuses_taken_names(hub):
    a, b = attach(hub), attach(hub)
    hub.sessions[1]["x"] = 1
    introduce(hub, a, "alice")
    assert hub.sessions["alice"] == {"x": 1} and 1 not in hub.sessions
    introduce(hub, b, "alice")
    assert b.written == [
        {"error": 'Client id "alice" is already connected', "code": 400}
    ]
    assert b.client_id == 2


def test_streams_are_keyed_by_connection(hub):
    a, b = attach(hub), attach(hub)
    hub.receive(a, message("slow", "from a", stream="s1"))
    hub.receive(b, message("slow", "from b", stream="s1"))
    (da, _, args_a, _), (db, _, args_b, _) = hub.offloader.pending
    args_b[0].send(args_b[1])
    args_a[0].send(args_a[1])
    db.callback(None)
    da.callback(None)
    assert a.written == [
        {"streamId": "s1", "data": "from a"},
        {"streamId": "s1", "close": True},
    ]
    assert b.written == [
        {"streamId": "s1", "data": "from b"},
        {"streamId": "s1", "close": True},
    ]


def test_disconnect_cancels_pending_calls_and_closes_streams(hub):
    a = attach(hub)
    hub.receive(a, message("slow", 1, stream="x"))
    hub.receive(a, message("slow", 2, stream="x"))  # queued behind the first
    d, _, (out, _), _ = hub.offloader.pending[0]
    hub.detach(a)
    assert d.called  # cancelled
    assert out.closed
    with pytest.raises(StreamClosedError):
        out.send(1)
    assert len(hub.offloader.pending) == 1  # the queued call never started
    assert a.written == []


def test_long_backlog_of_one_stream_id_runs_in_order_without_recursion(hub):
    a = attach(hub)
    hub.receive(a, message("slow", "first", stream="x"))
    for i in range(3000):
        hub.receive(a, message("echo", i, stream="x"))
    assert a.paused == 1  # MAX_INFLIGHT reached: stop reading this client
    hub.offloader.pending[0][0].callback(None)
    data = [m.get("data") for m in a.written if "data" in m]
    assert data == list(range(3000))
    assert sum(1 for m in a.written if m.get("close")) == 3001
    assert a.resumed == 1 and a.inflight == 0 and a.streams == {}
    assert MAX_INFLIGHT == 1000


def test_system_exit_closes_stream_then_asks_whoever_serves_the_hub_to_stop(hub, exits):
    a = attach(hub)
    hub.receive(a, message("exit", stream="igor_shutdown"))
    assert a.written == [
        {"streamId": "igor_shutdown", "data": "bye"},
        {"streamId": "igor_shutdown", "close": True},
    ]
    assert exits == ["igor handler exit_handler raised SystemExit"]
    # The hub never stops the reactor itself: it may be someone else's.
    assert hub.reactor.stops == 0


def test_system_exit_without_on_exit_stops_nothing():
    hub = Hub(HANDLERS, FakeOffloader(), reactor=FakeReactor(), shutdown_timeout=5)
    a = attach(hub)
    hub.receive(a, message("exit", stream="igor_shutdown"))
    assert a.written[-1] == {"streamId": "igor_shutdown", "close": True}
    assert hub.reactor.stops == 0


def test_drain_waits_for_streams_then_goes_away(hub):
    a, b = attach(hub), attach(hub)
    hub.receive(a, message("slow", 1))
    drained = hub.close_all()
    assert (a.gone_away, b.gone_away) == (0, 1)
    hub.receive(b, message("echo", 1))
    assert b.written[-1] == {"error": "Server is shutting down", "code": 503}
    hub.detach(b)
    assert not drained.called
    hub.offloader.pending[0][0].callback(None)
    assert a.written[-1] == {"streamId": "s", "close": True}
    assert a.gone_away == 1
    hub.detach(a)
    assert drained.called


def test_drain_is_bounded(hub):
    a = attach(hub)
    hub.receive(a, message("slow", 1))
    drained = hub.close_all()
    hub.reactor.advance(4.9)
    assert not drained.called
    hub.reactor.advance(0.2)
    assert a.aborted == 1 and drained.called
    assert hub.offloader.pending[0][0].called  # cancelled


def test_process_output_targets(hub):
    a, b = attach(hub), attach(hub)
    introduce(hub, b, "bob")
    output = hub.output("clock")
    assert hub.output("clock") is output
    output.send("tick", 1)
    output.send("only", {"x": 1}, client_id="bob")
    output.send("one", None, client_id="1")  # "1" and 1 are the same client
    with pytest.raises(UnknownClientError) as e:
        output.send("x", client_id="nobody")
    assert str(e.value) == 'No client with given id exists. Id="nobody"'
    output.send_error("oops", client_id=1)
    output.finish()
    with pytest.raises(StreamClosedError):
        output.send("late")
    assert a.written == [
        {"streamId": "clock", "action": "tick", "data": 1},
        {"streamId": "clock", "action": "one", "data": None},
        {"streamId": "clock", "error": "oops"},
        {"streamId": "clock", "close": True},
    ]
    assert b.written == [
        {"streamId": "clock", "action": "tick", "data": 1},
        {"streamId": "clock", "action": "only", "data": {"x": 1}},
        {"streamId": "clock", "close": True},
    ]


@pytest_twisted.ensureDeferred
async def test_thread_call_not_started_is_dropped_on_disconnect():
    offloader = Offloader(threads=1, processes=1)
    offloader.startService()
    release = threading.Event()
    started = threading.Event()
    ran = []

    def block(out, data, **kwargs):
        started.set()
        release.wait(10)
        ran.append(data)

    hub = Hub({"block": resolve(block)}, offloader)
    conn = FakeConn()
    hub.attach(conn)
    hub.receive(conn, message("block", 1, stream="a"))
    assert started.wait(10)
    hub.receive(conn, message("block", 2, stream="b"))  # waits for the only thread
    hub.detach(conn)
    release.set()
    await offloader.stopService()
    assert ran == [1]
    assert conn.written == []
    for call in reactor.getDelayedCalls():
        if call.func == hub.ids.expire:
            call.cancel()


def test_streams_done_then_close_all(hub):
    a, b = attach(hub), attach(hub)
    hub.receive(a, message("slow", 1))
    done = hub.streams_done()
    assert not done.called and (a.gone_away, b.gone_away) == (0, 0)
    hub.receive(b, message("echo", 1))
    assert b.written == [{"error": "Server is shutting down", "code": 503}]
    hub.offloader.pending[0][0].callback(None)
    assert done.called
    assert a.gone_away == 0  # connections stay open until the service stops
    closed = hub.close_all()
    assert (a.gone_away, b.gone_away) == (1, 1)
    hub.detach(a)
    hub.detach(b)
    assert closed.called


def test_service_starts_and_stops_processes(hub):
    from twisted.internet.task import LoopingCall

    from twistbridge.igor import IgorProcess
    from twistbridge.igor._processes import IgorService

    seen = {}
    release = threading.Event()

    class Worker(IgorProcess):
        def run(self):
            seen["attrs"] = (self.process_id, self.output, self.scope, self.sessions)
            release.wait(10)

    loop_holder = {}

    def ticking(output):
        loop = LoopingCall(output.send, "tick")
        loop.clock = hub.reactor
        loop.start(1.0, now=False)
        loop_holder["loop"] = loop
        return loop

    pending = defer.Deferred()
    worker = Worker()
    service = IgorService(
        hub,
        {
            "w": worker,
            "tick": ticking,
            "later": lambda output: pending,
            "bad": lambda output: 1 / 0,
        },
    )
    a = attach(hub)
    service.startService()
    try:
        worker_attrs = (worker.process_id, worker.output, worker.scope, worker.sessions)
        assert worker_attrs == ("w", hub.output("w"), hub.scope, hub.sessions)
        assert worker.daemon is True
        hub.reactor.advance(1.0)
        assert a.written == [{"streamId": "tick", "action": "tick", "data": None}]
        stopped = service.stopService()
        assert not loop_holder["loop"].running
        assert pending.called  # cancelled
        hub.output("w").send("late")  # dropped after stop, no error
        assert a.gone_away == 1
        hub.detach(a)
        assert stopped.called
    finally:
        release.set()
        worker.join(10)
    assert seen["attrs"][0] == "w"
    pending.addErrback(lambda f: None)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_hub_never_raises_on_any_payload(payload):
    handlers = {"echo": resolve(echo, "reactor")}
    hub = Hub(handlers, FakeOffloader(), reactor=FakeReactor())
    conn = attach(hub)
    hub.receive(conn, payload)
    assert len(conn.written) in (0, 1, 2)  # introduce_self answers nothing
    for m in conn.written:
        assert set(m) in (
            {"error", "code"},
            {"streamId", "data"},
            {"streamId", "close"},
        )


@given(
    st.dictionaries(
        st.sampled_from(["streamId", "action", "data"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=20),
            st.lists(st.integers(), max_size=3),
        ),
    )
)
@settings(max_examples=300, deadline=None)
def test_hub_never_raises_on_any_message(message):
    handlers = {"echo": resolve(echo, "reactor")}
    hub = Hub(handlers, FakeOffloader(), reactor=FakeReactor())
    conn = attach(hub)
    hub.receive(conn, json.dumps(message).encode())
    assert len(conn.written) in (0, 1, 2)
