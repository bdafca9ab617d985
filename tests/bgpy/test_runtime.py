"""
In-process: the task runtime (one task at a time, the accessor used by the
browser playground), the start/stop service, and the protocol over loopback.
"""

import threading

import bgpy_tasks
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from twistbridge import Bridge
from twistbridge.bgpy._runtime import TaskError
from twistbridge.bgpy._service import build_factory, build_services


def make_bridge(**settings):
    bridge = Bridge(port="none", igor_port="none", bgpy_port="none", **settings)
    bridge.bgpy_tasks(
        bgpy_tasks.init_task,
        bgpy_tasks.exec_task,
        bgpy_tasks.exit_task,
        allow_modules=["bgpy_tasks"],
    )
    return bridge


@pytest_twisted.ensureDeferred
async def test_runtime_state_and_execute():
    rt = make_bridge().runtime().bgpy
    assert rt.state() is None
    with pytest.raises(TaskError, match="Not initialized."):
        await rt.execute({"command": "get"})
    await rt.start()
    state = rt.state()
    assert state == {"request_count": 0, "value": 1000}
    state["value"] = -1  # a copy: the live state is untouched
    assert await rt.execute({"command": "increase", "value_change": 3}) == {
        "request_count": 1,
        "value": 1003,
    }
    with pytest.raises(TaskError, match="exec_task failed: ValueError: asked to fail"):
        await rt.execute({"command": "fail"})
    assert rt.state() == {"request_count": 2, "value": 1003}
    await rt.stop()  # exit_task; uninitialized again
    assert rt.state() is None


@pytest_twisted.ensureDeferred
async def test_tasks_run_one_at_a_time_in_a_thread():
    seen = []
    running = []

    def exec_task(client, state, exec_args):
        running.append(1)
        seen.append(
            (len(running), threading.current_thread() is not threading.main_thread())
        )
        # sleep-ok: overlapping tasks would show up while this one sleeps
        threading.Event().wait(0.02)
        running.pop()
        state["n"] += 1
        return state

    bridge = Bridge(bgpy_port="none")
    bridge.bgpy_tasks(lambda: {"n": 0}, exec_task, lambda c, s, a: None)
    rt = bridge.runtime().bgpy
    await rt.start()
    results = await defer.gatherResults([rt.execute({}) for _ in range(8)])
    assert sorted(r["n"] for r in results) == list(range(1, 9))
    assert seen == [(1, True)] * 8
    await rt.stop()


@pytest_twisted.ensureDeferred
async def test_a_task_returning_a_deferred_is_awaited_before_the_next_runs():
    """
    exec_task runs in a thread; a Deferred it returns is awaited in the
    reactor, its value is the new state, and the EXECs queued behind it
    (one batch) run only once it fired, on that state.
    """
    handed = defer.Deferred()  # fires, in the reactor, with the task's Deferred

    def exec_task(client, state, exec_args):
        if exec_args.get("later"):
            d = defer.Deferred()
            reactor.callFromThread(handed.callback, d)
            return d
        return {"n": state["n"] + 1}

    bridge = Bridge(bgpy_port="none")
    bridge.bgpy_tasks(lambda: {"n": 0}, exec_task, lambda c, s, a: None)
    rt = bridge.runtime().bgpy
    await rt.start()
    first = rt.execute({})
    waiting = rt.execute({"later": True})
    after = [rt.execute({}), rt.execute({})]
    assert await first == {"n": 1}
    pending = await handed
    assert not waiting.called and not any(d.called for d in after)
    assert rt.state() == {"n": 1}
    pending.callback({"n": 10})
    assert await waiting == {"n": 10}
    assert await defer.gatherResults(after) == [{"n": 11}, {"n": 12}]
    await rt.stop()


@pytest_twisted.ensureDeferred
async def test_service_runs_init_at_start_and_exit_at_stop():
    ran = []
    bridge = Bridge(bgpy_port="none")
    bridge.bgpy_tasks(
        lambda: {"v": 1},
        lambda c, s, a: s,
        lambda c, s, a: ran.append(dict(s)),
    )
    (service,) = build_services(bridge.runtime().bgpy)
    service.startService()
    rt = bridge.runtime().bgpy
    await rt.drained()  # after init_task
    assert rt.state() == {"v": 1}
    await service.stopService()
    assert ran == [{"v": 1}]
    assert build_services(Bridge(bgpy_port="none").runtime().bgpy) == []


class Collect(Protocol):
    def __init__(self):
        self.data = b""
        self.lines = defer.DeferredQueue()
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        while b"\n" in self.data:
            line, _, self.data = self.data.partition(b"\n")
            self.lines.put(line)

    def connectionLost(self, reason):
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_other_clients_unaffected_by_a_slow_task():
    bridge = make_bridge()
    rt = bridge.runtime().bgpy
    await rt.start()
    port = reactor.listenTCP(
        0, build_factory(bridge.runtime().bgpy), interface="127.0.0.1"
    )
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        slow, fast = Collect(), Collect()
        await connectProtocol(endpoint, slow)
        await connectProtocol(endpoint, fast)
        slow.transport.write(
            b'{"type":"EXEC","args":{"command":"sleep","seconds":0.3,"await_response":true}}\n'
        )
        assert (
            await slow.lines.get()
            == b'{"type":"OK","args":{"message":"Received \'EXEC\'"}}'
        )
        # While the slow task runs, another client's messages are answered.
        fast.transport.write(b'{"type":"AUTH","args":{"token":null}}\n')
        assert (
            await fast.lines.get()
            == b'{"type":"OK","args":{"message":"Received \'AUTH\'"}}'
        )
        assert slow.lines.pending == []
        assert await slow.lines.get() == b'{"type":"OK","args":{"slept":0.3}}'
        slow.transport.loseConnection()
        fast.transport.loseConnection()
        await slow.closed
        await fast.closed
    finally:
        await port.stopListening()
        await rt.stop()


@pytest_twisted.ensureDeferred
async def test_queued_exec_without_waiter_after_exit():
    """An EXEC nobody waits on, queued behind an EXIT, is dropped with a log line."""
    from twistbridge.bgpy._runtime import TaskClient

    rt = make_bridge().runtime().bgpy
    await rt.start()
    assert rt.submit(
        TaskClient(None, False, reactor), {"command": "increase", "value_change": 1}
    )
    exit_d = rt.stop()
    assert rt.submit(
        TaskClient(None, False, reactor), {"command": "increase", "value_change": 1}
    )
    await exit_d
    await rt.drained()
    assert rt.state() is None
