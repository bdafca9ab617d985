"""Time, flushing, results and pools of the in-memory client."""

import threading
import unittest

import pytest
from twisted.internet.defer import Deferred
from twisted.trial import unittest as trial

from twistbridge import Bridge
from twistbridge.testing import BridgeTestClient


def test_handlers_run_in_the_test_thread_by_default():
    app = Bridge()
    app.rpc_function(lambda: threading.current_thread().name, name="where")
    with BridgeTestClient(app) as client:
        assert client.rpc("where") == threading.current_thread().name


def test_real_pools_run_thread_handlers_in_pool_threads():
    app = Bridge()
    app.rpc_function(lambda: threading.current_thread().name, name="where")
    with BridgeTestClient(app, real_pools=True) as client:
        assert client.rpc("where").startswith("PoolThread-twistbridge-")


def test_an_answer_waiting_for_time_comes_with_advance():
    app = Bridge()
    waiting = []

    @app.rpc_function(run_in="reactor")
    def later():
        d = Deferred()
        waiting.append(d)
        return d

    with BridgeTestClient(app) as client:
        pending = client.http_deferred(
            "POST",
            "/rpc",
            b'{"jsonrpc": "2.0", "method": "later", "id": 1}',
            {"Content-Type": "application/json"},
        )
        with pytest.raises(LookupError, match="has no answer yet"):
            client.result(pending)
        client.reactor.callLater(3, waiting[0].callback, "done")
        client.advance(2.9)
        with pytest.raises(LookupError):
            client.result(pending)
        client.advance(0.1)
        assert client.result(pending).json() == {
            "jsonrpc": "2.0",
            "result": "done",
            "id": 1,
        }


def test_advance_stops_at_every_timer_in_order():
    with BridgeTestClient(Bridge()) as client:
        seen = []
        client.reactor.callLater(1, lambda: seen.append(client.reactor.seconds()))
        client.reactor.callLater(
            2, lambda: client.reactor.callLater(0.5, seen.append, "chained")
        )
        client.advance(3)
        assert seen == [1.0, "chained"]
        assert client.reactor.seconds() == 3.0
        with pytest.raises(ValueError):
            client.advance(-1)


def test_bgpy_init_task_runs_at_start_and_exit_task_at_close():
    events = []
    app = Bridge()
    app.bgpy_tasks(
        lambda: events.append("init") or {},
        lambda client, state, args: state,
        lambda client, state, args: events.append("exit") or state,
    )
    client = BridgeTestClient(app, start=False)
    assert events == []
    client.start()
    assert events == ["init"]
    client.close()
    assert events == ["init", "exit"]


class PlainUnittest(unittest.TestCase):
    """The client in a plain unittest (or trial) test case."""

    def setUp(self):
        app = Bridge()
        app.rpc_function(lambda a, b: a * b, name="mul")
        self.client = BridgeTestClient(app)
        self.addCleanup(self.client.close)

    def test_mul(self):
        self.assertEqual(self.client.rpc("mul", 6, 7), 42)


class TrialCase(trial.SynchronousTestCase):
    """The client in a trial test case: trial's reactor-free kind is enough."""

    def setUp(self):
        app = Bridge()
        app.igor_action("echo", lambda out, data, **kw: out.send(data))
        self.client = BridgeTestClient(app)
        self.addCleanup(self.client.close)

    def test_echo(self):
        self.assertEqual(
            self.client.igor().call("echo", 1),
            [{"streamId": "1", "data": 1}, {"streamId": "1", "close": True}],
        )


def test_handlers_reach_the_clients_runtime_through_the_bridge():
    app = Bridge()

    @app.rpc_function
    async def doubled(x):
        return await app.offloader.in_thread(lambda: x * 2)

    with BridgeTestClient(app) as client:
        assert app.runtime() is client.runtime
        assert client.rpc("doubled", 21) == 42
    assert app.runtime() is not client.runtime
