"""
The link from calls running in process workers back to the main process
(C{twistbridge._poolworker.upcall}), over real worker processes: answers,
errors, bounds, the timeout of a main side that does not answer, and a
broken worker.
"""

from __future__ import annotations

import os
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred

from twistbridge._poolworker import UpcallError, upcall
from twistbridge._processpool import ProcessPool
from twistbridge.offload import WorkerCrashed

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
if APPS not in sys.path:
    sys.path.insert(0, APPS)  # the workers get our sys.path, so they find it too

import upcall_app as app  # noqa: E402


@pytest.fixture
def pool():
    pools = []

    def make(**options):
        p = ProcessPool(size=1, reactor=reactor, **options)
        pools.append(p)
        return p

    yield make
    for p in pools:
        pytest_twisted.blockon(p.stop(5))


@pytest_twisted.ensureDeferred
async def test_a_call_asks_the_main_process_and_gets_its_answer(pool):
    seen = []

    def upper(body: bytes) -> bytes:
        seen.append(body)
        return body.upper()

    p = pool(upcalls={"upper": upper})
    assert await p.call(app.ask_twice, "upper", b"abc", b"d" * 100_000) == [
        ("ok", b"ABC"),
        ("ok", b"D" * 100_000),
    ]
    assert seen == [b"abc", b"d" * 100_000]


@pytest_twisted.ensureDeferred
async def test_threads_of_one_call_take_turns(pool):
    p = pool(upcalls={"twice": lambda body: body * 2})
    assert await p.call(app.ask_from_threads, "twice", 8) == [
        str(i).encode() * 2 for i in range(8)
    ]


@pytest_twisted.ensureDeferred
async def test_a_deferred_answer_and_an_error(pool):
    def later(body: bytes) -> Deferred:
        return task.deferLater(reactor, 0.05, lambda: b"later:" + body)

    def broken(body: bytes) -> bytes:
        raise ValueError(f"cannot do {body.decode()}")

    p = pool(upcalls={"later": later, "broken": broken})
    assert await p.call(app.ask, "later", b"x") == ("ok", b"later:x")
    assert await p.call(app.ask, "broken", b"that") == ("error", "cannot do that")
    assert await p.call(app.ask, "nobody", b"x") == (
        "error",
        "the main process has no handler 'nobody' (it has: broken, later)",
    )


@pytest_twisted.ensureDeferred
async def test_a_main_side_that_does_not_answer_times_out(pool):
    hung: list = []

    def hang(body: bytes) -> Deferred:
        d: Deferred = Deferred()
        hung.append(d)
        return d

    p = pool(upcalls={"hang": hang, "echo": lambda b: b}, upcall_timeout=0.3)
    assert await p.call(app.ask_twice, "hang", b"1", b"2") == [
        ("error", "the main process's 'hang' did not answer within 0.3 s"),
        ("error", "the main process's 'hang' did not answer within 0.3 s"),
    ]
    # the late handlers were cancelled; the link works on
    assert [d.called for d in hung] == [True, True]
    assert await p.call(app.ask, "echo", b"still") == ("ok", b"still")


@pytest_twisted.ensureDeferred
async def test_requests_and_answers_are_bounded(pool):
    p = pool(
        upcalls={"echo": lambda b: b, "big": lambda b: b"x" * 2000},
        upcall_max_bytes=1000,
    )
    # "echo" NUL and 995 bytes: 1000 bytes, at the bound
    assert await p.call(app.ask, "echo", b"y" * 995) == ("ok", b"y" * 995)
    assert await p.call(app.ask, "echo", b"y" * 996) == (
        "error",
        "the request to the main process (1001 bytes) is over the 1000-byte bound "
        "of the worker link",
    )
    assert await p.call(app.ask, "big", b"") == (
        "error",
        "the answer of the main process's 'big' (2000 bytes) is over the "
        "1000-byte bound of the worker link",
    )


@pytest_twisted.ensureDeferred
async def test_background_requests_of_a_call_are_answered_before_its_result(pool):
    seen = []

    def note(body: bytes) -> bytes:
        seen.append(body)
        return b"seen " + body

    p = pool(upcalls={"note": note})
    assert await p.call(app.ask_in_background, "note") == "returned"
    assert seen == [b"background", b"done:seen background"]


@pytest_twisted.ensureDeferred
async def test_a_worker_announcing_an_oversized_request_is_killed(pool):
    p = pool(upcalls={"echo": lambda b: b}, upcall_max_bytes=1000)
    with pytest.raises(
        WorkerCrashed, match=r"died \(killed by signal 9 \(SIGKILL\)\)$"
    ):
        await p.call(app.announce_oversized)
    assert await p.call(app.ask, "echo", b"fresh worker") == ("ok", b"fresh worker")


def test_no_link_outside_a_worker_call():
    with pytest.raises(UpcallError) as raised:
        upcall("echo", b"x")
    assert str(raised.value) == (
        "no link to the main process here: only a call running in one of the "
        "bridge's process workers has one"
    )


@pytest_twisted.ensureDeferred
async def test_the_offloaders_upcalls_reach_its_pool():
    from twistbridge.offload import Offloader

    o = Offloader(processes=1, reactor=reactor)
    o.startService()
    try:
        o.upcalls["late-added"] = lambda b: b"hello " + b
        assert await o.in_process(app.ask, "late-added", b"pool") == (
            "ok",
            b"hello pool",
        )
    finally:
        await o.stopService()
    assert defer  # imported for the Deferred type
