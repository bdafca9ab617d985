"""
The offload layer driven directly: where each mode runs, the process pool's
failure handling (crash, SIGKILL, timeout, pickling), cancellation, stats and
shutdown.  Every process test uses real worker processes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.defer import CancelledError

from twistbridge.offload import (
    CallTimeout,
    Handler,
    NotPicklable,
    Offloader,
    PoolStopped,
    RemoteError,
    ServerBusy,
    WorkerCrashed,
    call_in_reactor,
    check_picklable,
    resolve,
)
from twistbridge.testing import process_alive, wait_for

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
if APPS not in sys.path:
    sys.path.insert(0, APPS)  # the workers get our sys.path, so they find it too

import offload_calls as calls  # noqa: E402


async def until(condition, timeout=10.0, what=""):
    """Wait, without blocking the reactor, until C{condition()} is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        await task.deferLater(reactor, 0.02, lambda: None)


@pytest.fixture
def offloader():
    o = Offloader(threads=4, processes=2, call_timeout=None, shutdown_timeout=5)
    o.startService()
    yield o
    pids = o.process_pids()
    pytest_twisted.blockon(o.stopService())
    assert [p for p in pids if process_alive(p)] == []


# resolve --------------------------------------------------------------------


def test_resolve_defaults():
    async def coro():
        pass

    class AsyncCallable:
        async def __call__(self):
            pass

    assert resolve(calls.add).run_in == "thread"
    assert resolve(coro).run_in == "reactor"
    assert resolve(AsyncCallable()).run_in == "reactor"
    assert resolve(calls.add, "process").run_in == "process"
    assert resolve(calls.add, name="plus").name == "plus"
    assert resolve(calls.add).name == "add"
    with pytest.raises(ValueError, match="coroutine function"):
        resolve(coro, "process")
    with pytest.raises(
        ValueError, match="run_in must be one of reactor, thread, process"
    ):
        resolve(calls.add, "gpu")
    with pytest.raises(TypeError, match="not callable"):
        resolve(42)
    # Pickling is checked later (check_picklable), when the name is bound.
    assert resolve(lambda: 1, "process", name="anon").run_in == "process"


def test_check_picklable_says_why():
    def nested():
        pass

    check_picklable(resolve(calls.add, "process"))
    check_picklable(resolve(nested, "thread"))  # only process handlers travel
    with pytest.raises(NotPicklable) as info:
        check_picklable(resolve(lambda: 1, "process", name="anon"))
    assert str(info.value) == (
        "anon cannot run_in='process': it is a lambda, which a worker process "
        "cannot import; define it with def at the top level of a module"
    )
    with pytest.raises(NotPicklable) as info:
        check_picklable(resolve(nested, "process"), "nested (Igor action 'n')")
    assert str(info.value) == (
        "nested (Igor action 'n') cannot run_in='process': "
        "test_check_picklable_says_why.<locals>.nested is defined inside a function, "
        "so a worker process cannot import it; define it with def at the top level "
        "of a module"
    )


# each mode ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_each_mode_runs_where_it_says(offloader):
    here = os.getpid()
    r = await offloader.call(Handler(calls.where, "reactor", "where"))
    assert r == {"pid": here, "thread": threading.current_thread().name}
    r = await offloader.call(resolve(calls.where_async))
    assert r["pid"] == here
    r = await offloader.call(resolve(calls.where))
    assert r["pid"] == here
    assert r["thread"].startswith("PoolThread-twistbridge-")
    r = await offloader.call(resolve(calls.where, "process"))
    assert r["pid"] != here
    assert r["thread"] == "MainThread"
    assert await offloader.call(resolve(calls.add, "process"), 2, b=40) == 42
    assert await offloader.call(resolve(calls.add), "a", "b") == "ab"


@pytest_twisted.ensureDeferred
async def test_reactor_mode_awaits_deferreds_and_coroutines():
    assert await call_in_reactor(lambda: defer.succeed(5)) == 5
    assert await call_in_reactor(calls.where_async) == calls.where()
    with pytest.raises(ZeroDivisionError):
        await call_in_reactor(lambda: 1 / 0)


@pytest_twisted.ensureDeferred
async def test_handler_exceptions_keep_their_type_and_message(offloader):
    def raise_value_error(x):
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="^bad 1$"):
        await offloader.in_thread(raise_value_error, 1)
    with pytest.raises(
        ValueError, match=r"^invalid literal for int\(\) with base 10: 'x'$"
    ):
        await offloader.in_process(int, "x")
    with pytest.raises(SystemExit):
        await offloader.in_process(sys.exit, 4)


@pytest_twisted.ensureDeferred
async def test_worker_traceback_reaches_the_failure(offloader):
    d = offloader.in_process(int, "x")
    failures = []
    d.addErrback(failures.append)
    await until(lambda: failures, what="the failure")
    text = failures[0].getTraceback()
    assert "Traceback in the worker process:" in text
    assert "ValueError: invalid literal for int() with base 10: 'x'" in text
    assert "invalid literal" in failures[0].value.remote_traceback


@pytest_twisted.ensureDeferred
async def test_exception_that_cannot_travel_is_a_remote_error(offloader):
    err = await _failure_of(offloader.in_process(calls.raise_unpicklable))
    assert type(err) is RemoteError
    assert err.type_name == "offload_calls.Unpicklable"
    assert str(err) == "holds a lock"
    assert 'raise Unpicklable("holds a lock")' in err.remote_traceback


async def _failure_of(d):
    try:
        await d
    except BaseException as e:
        return e
    raise AssertionError("the call succeeded")


# pickling ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_unpicklable_argument_is_named(offloader):
    lock = threading.Lock()
    err = await _failure_of(offloader.call(resolve(calls.add, "process"), 1, lock))
    assert isinstance(err, NotPicklable)
    assert isinstance(err, TypeError)
    assert str(err).startswith(
        "cannot send add to a worker process: argument 1 (<unlocked _thread.lock"
    )
    assert "cannot pickle '_thread.lock' object" in str(err)
    err = await _failure_of(
        offloader.in_process(calls.add, 1, b={"ok": 1, "bad": lock})
    )
    assert "keyword argument 'b' ([" in str(err)
    assert "'bad'] = <unlocked _thread.lock" in str(err)
    err = await _failure_of(offloader.in_process(lambda: 1))
    assert (
        "the function (<function test_unpicklable_argument_is_named.<locals>.<lambda>"
        in str(err)
    )


@pytest_twisted.ensureDeferred
async def test_unpicklable_result_is_named_and_the_worker_lives_on(offloader):
    err = await _failure_of(
        offloader.call(resolve(calls.unpicklable_result, "process"))
    )
    assert isinstance(err, NotPicklable)
    assert str(err).startswith(
        "unpicklable_result returned something that cannot be pickled: the result <unlocked _thread.lock"
    )
    assert offloader.stats()["processes"]["crashed"] == 0
    assert await offloader.in_process(calls.add, 1, 1) == 2


@pytest_twisted.ensureDeferred
async def test_arguments_and_results_of_any_size(offloader):
    blob = os.urandom(3 * 1024 * 1024) * 4  # 12 MiB, far past AMP's 64 KiB values
    assert await offloader.in_process(calls.add, blob, b"!") == blob + b"!"
    text = "é" * 200_000
    assert await offloader.in_process(calls.add, text, text) == text * 2


# crashes, kills, timeouts ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_crashed_worker_fails_only_its_call(offloader):
    slow = offloader.in_process(calls.sleep, 0.5)
    err = await _failure_of(offloader.call(resolve(calls.crash, "process")))
    assert isinstance(err, WorkerCrashed)
    assert "running crash died (exited with status 3)" in str(err)
    assert await slow == 0.5  # the other worker was not disturbed
    assert await offloader.in_process(calls.add, 2, 2) == 4
    stats = offloader.stats()["processes"]
    assert stats["crashed"] == 1
    assert stats["workers"] == 2  # replaced


@pytest_twisted.ensureDeferred
async def test_sigkill_mid_call(offloader, tmp_path):
    marker = str(tmp_path / "pid")
    d = offloader.in_process(calls.pid_then_sleep, marker, 30)
    await until(lambda: os.path.exists(marker), what="the call to start")
    pid = int(open(marker).read())
    assert pid in offloader.process_pids()
    os.kill(pid, signal.SIGKILL)
    err = await _failure_of(d)
    assert isinstance(err, WorkerCrashed)
    assert str(err) == (
        f"the worker process {pid} running pid_then_sleep died (killed by signal 9 (SIGKILL))"
    )
    r = await offloader.in_process(calls.where)
    assert r["pid"] != pid
    assert not process_alive(pid)


@pytest_twisted.ensureDeferred
async def test_timeout_kills_the_worker_and_the_pool_recovers():
    # The bound covers the first call's import of offload_app too: keep it
    # generous enough for a loaded machine.
    o = Offloader(processes=1, call_timeout=5.0)
    o.startService()
    try:
        first = await o.in_process(calls.where)
        started = time.monotonic()
        err = await _failure_of(o.in_process(calls.sleep, 60))
        assert time.monotonic() - started < 30
        assert isinstance(err, CallTimeout)
        assert isinstance(err, TimeoutError)
        assert str(err) == (
            f"sleep did not finish within 5 s: its worker process {first['pid']} "
            "was killed and replaced"
        )
        assert not process_alive(first["pid"])
        second = await o.in_process(calls.where)
        assert second["pid"] != first["pid"]
        assert o.stats()["processes"]["timed_out"] == 1
    finally:
        await o.stopService()


def test_call_timeout_setting():
    from twistbridge import Bridge

    assert Bridge().settings.call_timeout == 300.0
    assert Bridge(call_timeout=0).settings.call_timeout is None
    assert Bridge(call_timeout=2).offloader.call_timeout == 2.0
    assert Bridge(shutdown_timeout=3).offloader.shutdown_timeout == 3


@pytest_twisted.ensureDeferred
async def test_queued_calls_survive_a_crash_of_the_only_worker():
    o = Offloader(processes=1)
    o.startService()
    try:
        crashing = o.in_process(calls.crash, 9)
        queued = [o.in_process(calls.add, i, 1) for i in range(3)]
        err = await _failure_of(crashing)
        assert str(err).endswith("running crash died (exited with status 9)")
        assert await defer.gatherResults(queued) == [1, 2, 3]
    finally:
        await o.stopService()


@pytest_twisted.ensureDeferred
async def test_worker_output_goes_to_the_log(offloader):
    from twisted.logger import formatEvent, globalLogPublisher

    lines = []

    def observe(event):
        if event.get("log_namespace") == "twistbridge._processpool":
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        assert await offloader.in_process(calls.chatty, "hello") == 5
        await until(lambda: len(lines) >= 2, what="two log lines")
    finally:
        globalLogPublisher.removeObserver(observe)
    pid = offloader.process_pids()[0]
    assert sorted(lines) == [
        f"process worker {pid} stderr: err: hello",
        f"process worker {pid} stdout: out: hello",
    ]


# cancellation ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_cancelled_queued_process_call_never_runs(tmp_path):
    o = Offloader(processes=1)
    o.startService()
    try:
        busy_marker = str(tmp_path / "busy")
        never = str(tmp_path / "never")
        busy = o.in_process(calls.pid_then_sleep, busy_marker, 2)
        queued = o.in_process(calls.touch, never)
        await until(lambda: os.path.exists(busy_marker), what="the first call")
        assert o.stats()["processes"]["queued"] == 1
        queued.cancel()
        assert o.stats()["processes"]["queued"] == 0
        with pytest.raises(CancelledError):
            await queued
        assert await busy == 2
        assert await o.in_process(calls.add, 1, 2) == 3  # the next call ran after it
        assert not os.path.exists(never)
    finally:
        await o.stopService()


@pytest_twisted.ensureDeferred
async def test_cancelled_queued_thread_call_never_runs(tmp_path):
    o = Offloader(threads=1)
    o.startService()
    try:
        gate = threading.Event()
        never = str(tmp_path / "never")
        busy = o.in_thread(gate.wait, 10)
        queued = o.in_thread(calls.touch, never)
        await until(lambda: o.stats()["threads"]["busy"] == 1, what="the first call")
        assert o.stats()["threads"]["queued"] == 1
        queued.cancel()
        gate.set()
        assert await busy is True
        assert await o.in_thread(calls.add, 1, 2) == 3
        with pytest.raises(CancelledError):
            await queued
        assert not os.path.exists(never)
        assert o.stats()["threads"] == {
            "size": 1,
            "busy": 0,
            "queued": 0,
            "rejected": 0,
        }
    finally:
        await o.stopService()


@pytest_twisted.ensureDeferred
async def test_cancelled_running_process_call_runs_on_and_its_answer_is_dropped(
    offloader,
):
    d = offloader.in_process(calls.sleep, 0.3)
    await until(
        lambda: offloader.stats()["processes"]["busy"] == 1, what="the call to start"
    )
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    await until(
        lambda: offloader.stats()["processes"]["completed"] == 1, what="the call to end"
    )
    assert offloader.stats()["processes"]["busy"] == 0
    assert await offloader.in_process(calls.add, 1, 2) == 3


# stats ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stats_report_sizes_busy_and_queued():
    o = Offloader(threads=2, processes=1)
    assert o.stats() == {
        "threads": {"size": 2, "busy": 0, "queued": 0, "rejected": 0},
        "processes": {
            "size": 1,
            "workers": 0,
            "busy": 0,
            "queued": 0,
            "rejected": 0,
        },
    }
    o.startService()
    try:
        gate = threading.Event()
        threads = [o.in_thread(gate.wait, 10) for _ in range(3)]
        procs = [o.in_process(calls.sleep, 0.3) for _ in range(3)]
        await until(
            lambda: (
                o.stats()["processes"]["busy"] == 1
                and o.stats()["threads"]["busy"] == 2
            ),
            what="busy pools",
        )
        assert o.stats() == {
            "threads": {"size": 2, "busy": 2, "queued": 1, "rejected": 0},
            "processes": {
                "size": 1,
                "workers": 1,
                "busy": 1,
                "queued": 2,
                "rejected": 0,
                "completed": 0,
                "crashed": 0,
                "timed_out": 0,
            },
        }
        gate.set()
        assert await defer.gatherResults(threads) == [True, True, True]
        assert await defer.gatherResults(procs) == [0.3, 0.3, 0.3]
        stats = o.stats()
        assert stats["threads"] == {"size": 2, "busy": 0, "queued": 0, "rejected": 0}
        assert (stats["processes"]["busy"], stats["processes"]["queued"]) == (0, 0)
        assert stats["processes"]["completed"] == 3
    finally:
        await o.stopService()


# the queue bound ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_thread_pool_refuses_calls_past_max_queued(tmp_path):
    o = Offloader(threads=1, max_queued=2)
    o.startService()
    try:
        gate = threading.Event()
        running = o.in_thread(gate.wait, 10)
        # No wait for the first call to start: it is not counted as waiting.
        queued = [
            o.in_thread(calls.add, 1, 1),
            o.in_thread(calls.touch, str(tmp_path / "x")),
        ]
        err = await _failure_of(o.in_thread(calls.add, 2, 2))
        assert type(err) is ServerBusy
        assert str(err) == (
            "server busy: 2 calls are waiting for the thread pool; try again later"
        )
        await until(lambda: o.stats()["threads"]["busy"] == 1, what="the first call")
        assert o.stats()["threads"] == {
            "size": 1,
            "busy": 1,
            "queued": 2,
            "rejected": 1,
        }
        # A cancelled call gives its place back at once.
        queued[1].cancel()
        assert o.stats()["threads"]["queued"] == 1
        last = o.in_thread(calls.add, 3, 3)
        assert type(await _failure_of(o.in_thread(calls.add, 4, 4))) is ServerBusy
        gate.set()
        assert await running is True
        assert await queued[0] == 2
        assert await last == 6
        assert not (tmp_path / "x").exists()
        # Drained: calls are taken again.
        assert await o.in_thread(calls.add, 5, 5) == 10
        assert o.stats()["threads"] == {
            "size": 1,
            "busy": 0,
            "queued": 0,
            "rejected": 2,
        }
    finally:
        await o.stopService()


@pytest_twisted.ensureDeferred
async def test_process_pool_refuses_calls_past_max_queued_before_pickling():
    o = Offloader(processes=1, max_queued=1)
    o.startService()
    try:
        gate = o.in_process(calls.sleep, 0.5)  # its worker is still starting
        queued = o.in_process(calls.add, 1, 2)
        # Refused before its arguments are pickled (a lock would not pickle).
        err = await _failure_of(o.in_process(calls.add, threading.Lock(), 1))
        assert type(err) is ServerBusy
        assert str(err) == (
            "server busy: 1 call is waiting for the process pool; try again later"
        )
        assert o.stats()["processes"]["rejected"] == 1
        assert (await gate, await queued) == (0.5, 3)
        assert await o.in_process(calls.add, 2, 2) == 4
        stats = o.stats()["processes"]
        assert (stats["queued"], stats["rejected"]) == (0, 1)
    finally:
        await o.stopService()


@pytest_twisted.ensureDeferred
async def test_no_bound_with_max_queued_0():
    o = Offloader(threads=1, max_queued=0)
    o.startService()
    try:
        gate = threading.Event()
        pending = [o.in_thread(gate.wait, 10)] + [
            o.in_thread(calls.add, i, 0) for i in range(50)
        ]
        assert o.stats()["threads"]["queued"] >= 50
        gate.set()
        assert await defer.gatherResults(pending) == [True, *range(50)]
    finally:
        await o.stopService()


# lifecycle --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_workers_start_lazily_or_at_startup():
    lazy = Offloader(processes=2)
    lazy.startService()
    eager = Offloader(processes=2, prestart=True)
    eager.startService()
    try:
        assert lazy.stats()["processes"]["workers"] == 0
        assert eager.stats()["processes"]["workers"] == 2
        await lazy.in_process(calls.add, 1, 1)
        assert lazy.stats()["processes"]["workers"] == 1
    finally:
        await lazy.stopService()
        await eager.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_lets_running_calls_finish_then_refuses_new_ones():
    o = Offloader(processes=1, shutdown_timeout=10)
    o.startService()
    running = o.in_process(calls.sleep, 0.3)
    queued = o.in_process(calls.add, 1, 2)
    await until(lambda: o.stats()["processes"]["busy"] == 1, what="the call to start")
    pids = o.process_pids()
    stopped = o.stopService()
    err = await _failure_of(o.in_process(calls.add, 1, 1))
    assert isinstance(err, PoolStopped)
    assert await running == 0.3
    assert await queued == 3
    await stopped
    assert [p for p in pids if process_alive(p)] == []


def test_pools_used_without_the_service_stop_when_their_reactor_shuts_down():
    """
    An offloader used without being started (a resource mounted on its own)
    stops its pools when its reactor shuts down; the trigger that stops them
    is not removed while it fires (Twisted warns that this will raise).
    """
    from twisted.internet.selectreactor import SelectReactor

    own = SelectReactor()
    o = Offloader(threads=1, shutdown_timeout=1, reactor=own)
    o.in_thread(calls.add, 1, 2)
    assert o.stats()["threads"]["size"] == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        own.fireSystemEvent("shutdown")
    assert [str(w.message) for w in caught] == []
    failed = []
    o.in_process(calls.add, 1, 2).addErrback(failed.append)
    assert [(f.type, str(f.value)) for f in failed] == [
        (PoolStopped, "the process pool stopped")
    ]


@pytest_twisted.ensureDeferred
async def test_stop_kills_a_busy_worker_after_the_grace_period(tmp_path):
    o = Offloader(processes=2, shutdown_timeout=0.5)
    o.startService()
    marker = str(tmp_path / "pid")
    stuck = o.in_process(calls.pid_then_sleep, marker, 60)
    await until(lambda: os.path.exists(marker), what="the call to start")
    pid = int(open(marker).read())
    started = time.monotonic()
    await o.stopService()
    assert time.monotonic() - started < 5
    err = await _failure_of(stuck)
    assert isinstance(err, PoolStopped)
    assert str(err) == (
        f"pid_then_sleep was still running when the process pool stopped: "
        f"its worker process {pid} was killed"
    )
    assert not process_alive(pid)


@pytest_twisted.ensureDeferred
async def test_a_worker_that_cannot_start_fails_the_call_clearly():
    from twistbridge._processpool import ProcessPool

    pool = ProcessPool(1, executable="/bin/false")
    err = await _failure_of(pool.call(calls.add, 1, 2))
    assert isinstance(err, WorkerCrashed)
    assert str(err) == "the process pool cannot start a worker (exited with status 1)"
    await pool.stop()


# through a real `twistd bridge` -------------------------------------------------------

import json  # noqa: E402
import socket  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import requests  # noqa: E402

from twistbridge.testing import BridgeProcess  # noqa: E402


def children_of(pid: int) -> list:
    """The process ids whose parent is C{pid}, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def offload(server, fn, mode, *args, timeout=30):
    """Run one call through the test app's /offload resource."""
    response = requests.get(
        server.url("/offload"),
        params={"fn": fn, "mode": mode, "args": json.dumps(list(args))},
        timeout=timeout,
    )
    return response.status_code, response.json()


def pools(server):
    return requests.get(server.url("/health"), timeout=5).json()["pools"]


APP_ARGS = ["--app", "offload_app:bridge", "--igor-port", "none", "--bgpy-port", "none"]


@pytest.mark.long
def test_twistd_modes_protocols_crash_kill_timeout_cancel_and_exit(apps_env, tmp_path):
    """
    One server for what does not need a server of its own: where each mode
    runs, on /offload and on every protocol; /health's pools, as the
    handlers page shows them; then a crash, a kill, a timeout, a dropped
    call and SIGTERM, in that order (each leaves the pool as the next needs).
    """
    args = [*APP_ARGS[:2], "--bgpy-port", "none", "--processes", "2"]
    # The timeout covers a fresh worker's first import of the app too, which
    # takes seconds on a loaded machine: 6 s leaves room for that.
    args += ["--threads", "4", "--call-timeout", "6", "--shutdown-timeout", "1"]
    server = BridgeProcess(args, env=apps_env).start()
    try:
        server_pid = server.process.pid
        shown = handlers_page_json('reports both pools under ``"pools"``:')["pools"]
        before = pools(server)
        assert before["processes"] == {
            "size": 2,
            "workers": 0,
            "busy": 0,
            "queued": 0,
            "rejected": 0,
        }
        # /health reports the pools the handlers page shows; the process
        # pool's counters appear once it started.
        assert set(before) == set(shown)
        assert set(before["threads"]) == set(shown["threads"])
        counters = {"completed", "crashed", "timed_out"}
        assert set(before["processes"]) == set(shown["processes"]) - counters
        # Each mode answers, and runs where it says.
        code, body = offload(server, "where", "reactor")
        assert (code, body["result"]["pid"], body["result"]["thread"]) == (
            200,
            server_pid,
            "MainThread",
        )
        code, body = offload(server, "where", "thread")
        assert (code, body["result"]["pid"]) == (200, server_pid)
        assert body["result"]["thread"].startswith("PoolThread-twistbridge-")
        code, body = offload(server, "where", "process")
        assert code == 200
        assert body["result"]["pid"] in children_of(server_pid)
        after = pools(server)["processes"]
        assert set(after) == set(shown["processes"])
        assert (after["completed"], after["crashed"], after["timed_out"]) == (1, 0, 0)
        for mode in ("reactor", "thread", "process"):
            assert offload(server, "add", mode, 20, 22) == (200, {"result": 42})

        protocols_run_handlers_in_each_mode(server, tmp_path)

        # An unpicklable result is a clear error.
        code, body = offload(server, "unpicklable_result", "process")
        assert (code, body["error"]) == (500, "NotPicklable")
        assert body["message"].startswith(
            "unpicklable_result returned something that cannot be pickled: "
            "the result <unlocked _thread.lock object at 0x"
        )

        with ThreadPoolExecutor(4) as clients:
            # SIGKILL mid-call: that call errors, the next call succeeds.
            marker = str(tmp_path / "killed")
            pending = clients.submit(
                offload, server, "pid_then_sleep", "process", marker, 30
            )
            wait_for(lambda: os.path.exists(marker), 20, what="the call to start")
            victim = int(open(marker).read())
            os.kill(victim, signal.SIGKILL)
            assert pending.result() == (
                500,
                {
                    "error": "WorkerCrashed",
                    "message": f"the worker process {victim} running pid_then_sleep died "
                    "(killed by signal 9 (SIGKILL))",
                },
            )
            assert offload(server, "add", "process", 1, 2) == (200, {"result": 3})

            # Past the call timeout: the call errors, its worker is replaced.
            marker = str(tmp_path / "stuck")
            code, body = offload(server, "pid_then_sleep", "process", marker, 30)
            stuck = int(open(marker).read())
            assert (code, body) == (
                500,
                {
                    "error": "CallTimeout",
                    "message": f"pid_then_sleep did not finish within 6 s: its worker "
                    f"process {stuck} was killed and replaced",
                },
            )
            assert offload(server, "add", "process", 2, 3) == (200, {"result": 5})
            assert not process_alive(stuck)
            stats = pools(server)["processes"]
            # Calls came one at a time: one worker, replaced twice.
            assert (stats["crashed"], stats["timed_out"], stats["workers"]) == (1, 1, 1)

            # A client that goes away drops its queued call.
            markers = [str(tmp_path / f"busy{i}") for i in range(2)]
            release = str(tmp_path / "release")
            busy = [
                clients.submit(offload, server, "pid_then_wait", "process", m, release)
                for m in markers
            ]
            wait_for(
                lambda: all(os.path.exists(m) for m in markers), 20, what="busy workers"
            )
            never = str(tmp_path / "never")
            host, port = server.addresses["http"].rsplit(":", 1)
            raw = socket.create_connection((host, int(port)))
            path = f"/offload?fn=touch&mode=process&args=%5B%22{never}%22%5D"
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            wait_for(
                lambda: pools(server)["processes"]["queued"] == 1,
                10,
                what="queued call",
            )
            raw.close()
            wait_for(
                lambda: pools(server)["processes"]["queued"] == 0,
                10,
                what="dropped call",
            )
            open(release, "w").close()
            assert [f.result()[0] for f in busy] == [200, 200]
            assert offload(server, "add", "process", 3, 4) == (200, {"result": 7})
            assert not os.path.exists(never)

            # SIGTERM with a call still running: the server exits, no worker remains.
            marker = str(tmp_path / "last")
            clients.submit(offload, server, "pid_then_sleep", "process", marker, 30)
            wait_for(lambda: os.path.exists(marker), 20, what="the last call")
            workers = children_of(server_pid)
            assert len(workers) == 2
            started = time.monotonic()
            status = server.stop()
            assert time.monotonic() - started < 10
            assert status in (0, -signal.SIGTERM)
            assert [p for p in workers if process_alive(p)] == []
            assert "killing 1 worker(s) still busy" in server.output
    finally:
        server.stop()


@pytest.mark.long
def test_twistd_reactor_stays_responsive_under_load_and_killed_leaves_no_worker(
    apps_env, tmp_path
):
    args = [*APP_ARGS, "--processes", "4", "--threads", "20"]
    server = BridgeProcess(args, env=apps_env).start()
    try:
        # Start the workers first so the load below is all work, no start-up.
        with ThreadPoolExecutor(24) as clients:
            warm = [
                clients.submit(offload, server, "where", "process") for _ in range(4)
            ]
            wait_for(
                lambda: pools(server)["processes"]["workers"] == 4, 30, what="4 workers"
            )
            assert [f.result()[0] for f in warm] == [200] * 4
            workers = set(children_of(server.process.pid))
            assert len(workers) == 4
            # 4 workers keep the 2 cores busy and 20 threads wait, until the
            # probes below are done.
            release = str(tmp_path / "release")
            jobs = [
                clients.submit(offload, server, "spin_until", "process", release)
                for _ in range(4)
            ]
            jobs += [
                clients.submit(offload, server, "wait_until", "thread", release)
                for _ in range(20)
            ]
            wait_for(
                lambda: (
                    pools(server)["processes"]["busy"] == 4
                    and pools(server)["threads"]["busy"] == 20
                ),
                10,
                what="4 busy workers and 20 busy threads",
            )
            latencies, seen = [], []
            for _ in range(20):
                started = time.monotonic()
                response = requests.get(server.url("/health"), timeout=5)
                latencies.append(time.monotonic() - started)
                assert response.status_code == 200
                assert response.json()["status"] == "ok"
                seen.append(response.json()["pools"])
            open(release, "w").close()
            results = [f.result() for f in jobs]
        # Every probe ran while the whole load did.
        assert [(s["processes"]["busy"], s["threads"]["busy"]) for s in seen] == [
            (4, 20)
        ] * 20
        print(f"/health under load: max {max(latencies) * 1000:.0f} ms over 20 probes")
        assert max(latencies) < 0.5, latencies
        assert [code for code, _ in results] == [200] * 24
        assert all(body["result"] > 0 for _, body in results[:4]), results[:4]
        assert [body["result"] for _, body in results[4:]] == [release] * 20

        # Killed outright with a call running: the kernel kills every worker
        # whose server died (PR_SET_PDEATHSIG).
        assert set(children_of(server.process.pid)) == workers
        marker = str(tmp_path / "pid")
        with ThreadPoolExecutor(1) as clients:
            pending = clients.submit(
                offload, server, "pid_then_sleep", "process", marker, 60
            )
            wait_for(lambda: os.path.exists(marker), 20, what="the call to start")
            assert int(open(marker).read()) in workers
            server.signal(signal.SIGKILL)
            with pytest.raises(requests.ConnectionError):
                pending.result()
        wait_for(
            lambda: not any(process_alive(p) for p in workers),
            10,
            what=f"workers {sorted(workers)} to die",
        )
    finally:
        server.stop()


def protocols_run_handlers_in_each_mode(server, tmp_path):
    """JSON-RPC, Igor and izzati run their handlers where their mode says."""
    import websocket
    from izzati import Frontend
    from jsonrpcclient import Ok, parse, request

    server_pid = server.process.pid

    def rpc(method, *params):
        body = requests.post(
            server.url("/rpc"), json=request(method, params=params), timeout=30
        )
        result = parse(body.json())
        assert isinstance(result, Ok), result
        return result.result

    # JSON-RPC
    for mode in ("reactor", "thread", "process"):
        assert rpc(f"add_{mode}", 20, 22) == 42
    assert rpc("where_reactor")["thread"] == "MainThread"
    assert rpc("where_reactor")["pid"] == server_pid
    assert rpc("where_thread")["thread"].startswith("PoolThread-twistbridge-")
    assert rpc("where_process")["pid"] in children_of(server_pid)

    # Igor, on /ws
    ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=30)
    try:
        seen = {}
        for mode in ("reactor", "thread", "process"):
            ws.send(
                json.dumps({"streamId": mode, "action": f"where_{mode}", "data": "ab"})
            )
            messages = [json.loads(ws.recv()) for _ in range(3)]
            assert messages[1:] == [
                {"streamId": mode, "data": "abab"},
                {"streamId": mode, "close": True},
            ]
            seen[mode] = messages[0]["data"]
        assert seen["reactor"] == {"pid": server_pid, "thread": "MainThread"}
        assert seen["thread"]["pid"] == server_pid
        assert seen["thread"]["thread"].startswith("PoolThread-twistbridge-")
        assert seen["process"]["pid"] in children_of(server_pid)
    finally:
        ws.close()

    # izzati, its callback in a worker process (form fields: uploaded
    # files hold open temporary files, which do not pickle: a clear error)
    answer = Frontend(server.url("/")).send({"name": "ada"})
    assert answer["text"] == {"name": "ada"}
    assert answer["sizes"] == []
    assert answer["where"]["pid"] in children_of(server_pid)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"x" * 1000)
    with open(upload, "rb") as f:
        answer = Frontend(server.url("/")).send({"name": "ada"}, f)
    assert answer["error"].startswith(
        "NotPicklable: cannot send upload to a worker process: "
        "argument 1 ([0] = <UploadedFile 'upload.bin'"
    )


# the queue bound, as every protocol's client sees it ------------------------------


BUSY = "server busy: 2 calls are waiting for the thread pool; try again later"


def handlers_page_json(after: str) -> dict:
    """The JSON block of docs/handlers.rst that follows the text C{after}."""
    page = Path(__file__).resolve().parent.parent / "docs" / "handlers.rst"
    block = (
        page.read_text("utf-8").split(after, 1)[1].split(".. code-block:: json", 1)[1]
    )
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            break
        lines.append(line)
    text = "\n".join(lines).strip()
    return json.loads(text if text.startswith("{") else "{" + text + "}")


def test_twistd_full_queue_answers_server_busy_on_every_protocol(apps_env):
    import websocket

    from twistbridge.testing import JsonLinesClient

    env = dict(apps_env, BGPY_TOKEN="busy-token")
    args = ["--app", "answers_app:bridge", "--threads", "1", "--max-queued", "2"]
    with BridgeProcess(args, env=env) as server:

        def rpc(method, *params, id=1):
            body = {
                "jsonrpc": "2.0",
                "method": method,
                "params": list(params),
                "id": id,
            }
            return requests.post(server.url("/rpc"), json=body, timeout=40).json()

        bgpy = JsonLinesClient(server.addresses["bgpy"])
        ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=30)
        try:
            assert bgpy.call("AUTH", token="busy-token")["type"] == "OK"
            assert bgpy.line()["type"] == "OK"
            with ThreadPoolExecutor(3) as clients:
                # One call runs, two wait: the queue is full.
                blockers = [clients.submit(rpc, "block") for _ in range(3)]
                wait_for(
                    lambda: (
                        pools(server)["threads"]
                        == {"size": 1, "busy": 1, "queued": 2, "rejected": 0}
                    ),
                    20,
                    what="a full thread pool",
                )
                # The 4th call, on each protocol, is refused at once.
                refused = rpc("add", 1, 2, id=4)
                assert refused == {
                    "jsonrpc": "2.0",
                    "error": {"code": -32003, "message": "Server busy", "data": BUSY},
                    "id": 4,
                }
                # docs/handlers.rst shows this answer.
                assert refused == handlers_page_json(
                    "a fourth JSON-RPC call is answered:"
                )
                answer = requests.post(server.url("/"), data={"a": "b"}, timeout=10)
                assert (answer.status_code, answer.headers["Retry-After"]) == (503, "1")
                assert answer.headers["Content-Type"] == "application/json"
                assert answer.json() == {"error": BUSY}
                ws.send(json.dumps({"streamId": "s", "action": "echo", "data": "hi"}))
                assert [json.loads(ws.recv()) for _ in range(2)] == [
                    {"streamId": "s", "error": BUSY},
                    {"streamId": "s", "close": True},
                ]
                bgpy.send("EXEC", await_response=True)
                assert bgpy.line() == {
                    "type": "OK",
                    "args": {"message": "Received 'EXEC'"},
                }
                assert bgpy.line() == {"type": "ERROR", "args": {"message": BUSY}}
                assert pools(server)["threads"]["rejected"] == 4
                # Released, the queue drains and every protocol is served again.
                assert rpc("release") == {"jsonrpc": "2.0", "result": True, "id": 1}
                assert [f.result()["result"] for f in blockers] == ["released"] * 3
            wait_for(
                lambda: pools(server)["threads"]["queued"] == 0, 10, what="drained"
            )
            assert rpc("add", 1, 2) == {"jsonrpc": "2.0", "result": 3, "id": 1}
            answer = requests.post(server.url("/"), data={"a": "b"}, timeout=10)
            assert (answer.status_code, answer.json()) == (200, {"text": {"a": "b"}})
            ws.send(json.dumps({"streamId": "t", "action": "echo", "data": "hi"}))
            assert [json.loads(ws.recv()) for _ in range(2)] == [
                {"streamId": "t", "data": "hi"},
                {"streamId": "t", "close": True},
            ]
            bgpy.send("EXEC", await_response=True)
            assert bgpy.line()["args"] == {"message": "Received 'EXEC'"}
            assert bgpy.line() == {"type": "OK", "args": {"count": 1}}
            assert pools(server)["threads"] == {
                "size": 1,
                "busy": 0,
                "queued": 0,
                "rejected": 4,
            }
        finally:
            ws.close()
            bgpy.close()
