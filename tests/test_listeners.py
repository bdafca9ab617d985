"""ListenerService on Twisted's StreamServerEndpointService, over real sockets."""

import socket

import pytest
import pytest_twisted
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import threads
from twisted.logger import globalLogPublisher

from twistbridge.config import Settings
from twistbridge.limits import HTTP_REFUSAL, ListenerLimits
from twistbridge.listeners import ListenError, ListenerService, build_listener


def bound_port(listener):
    return int(listener.status()["address"].rpartition(":")[2])


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest_twisted.ensureDeferred
async def test_binds_in_privileged_start_and_serves_through_the_tracker(echo):
    listener = build_listener(
        "echo", "tcp:0:interface=127.0.0.1", echo.factory(), Settings()
    )
    assert isinstance(listener, StreamServerEndpointService)
    assert listener.factory is listener.connections
    assert listener.status() == {"up": False, "address": None}
    listener.privilegedStartService()
    assert listener.status()["up"] is True
    port = bound_port(listener)
    assert listener.status()["address"] == f"127.0.0.1:{port}"
    listener.startService()  # bound already: the same port
    assert bound_port(listener) == port
    assert await threads.deferToThread(echo.exchange, port, b"hello") == b"hello"
    await listener.stopService()
    assert listener.status() == {"up": False, "address": None}
    assert not listener.running
    with pytest.raises(ConnectionRefusedError):
        await threads.deferToThread(echo.exchange, port, b"hello")


@pytest_twisted.ensureDeferred
async def test_starts_again_after_a_stop(echo):
    listener = ListenerService("echo", "tcp:0:interface=127.0.0.1", echo.factory())
    listener.startService()  # adopted by an app: startService alone binds
    first = bound_port(listener)
    await listener.stopService()
    listener.startService()
    try:
        second = bound_port(listener)
        assert await threads.deferToThread(echo.exchange, second, b"again") == b"again"
    finally:
        await listener.stopService()
    assert listener.status() == {"up": False, "address": None}
    assert first > 0


@pytest_twisted.ensureDeferred
async def test_a_port_in_use_is_one_line_and_no_traceback(logged, echo):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    listener = ListenerService(
        "http", f"tcp:{port}:interface=127.0.0.1", echo.factory()
    )
    try:
        with pytest.raises(ListenError) as raised:
            listener.privilegedStartService()
    finally:
        taken.close()
    error = raised.value
    assert str(error) == (
        f"twistd bridge: cannot listen for http on tcp:{port}:interface=127.0.0.1: "
        f"port {port} is already in use"
    )
    assert (error.listener, error.reason) == ("http", f"port {port} is already in use")
    assert listener.status() == {"up": False, "address": None}
    assert [e for e in logged if e.get("log_failure") or e.get("isError")] == []
    # Nothing to stop; a later start binds once the port is free.
    await listener.stopService()
    listener.startService()
    try:
        assert bound_port(listener) == port
    finally:
        await listener.stopService()


def test_build_listener_takes_the_limits_of_the_settings(echo):
    settings = Settings(max_connections=7, max_connections_per_client=3)
    listener = build_listener("http", "tcp:0", echo.factory(), settings, HTTP_REFUSAL)
    tracker = listener.connections
    assert tracker.limits == ListenerLimits(7, 3, HTTP_REFUSAL)
    assert (tracker.max_connections, tracker.max_connections_per_client) == (7, 3)
    assert tracker.name == "http"


def test_limit_values_say_why_a_connection_is_refused():
    limits = ListenerLimits(max_connections=2, max_connections_per_client=1)
    assert limits.refusal_reason(0, 0) is None
    assert limits.refusal_reason(2, 0) == "listener full"
    assert limits.refusal_reason(1, 1) == "too many from this client"
    assert ListenerLimits().refusal_reason(10**6, 10**6) is None


@pytest_twisted.ensureDeferred
async def test_a_description_that_does_not_parse_raises_and_leaves_nothing_to_stop(
    echo,
):
    listener = ListenerService("http", "nosuchtype:1234", echo.factory())
    with pytest.raises(ValueError, match="nosuchtype"):
        listener.privilegedStartService()
    assert await listener.stopService() is None
    assert listener.status() == {"up": False, "address": None}
