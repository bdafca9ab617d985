"""
What every part sharing a Redis broker needs (the C{broker} setting,
C{--broker redis://host:port/db}): the endpoint to Redis (TCP, TLS or a unix
socket), txredisapi's protocols built for it, and the Lua scripts of the
leases (a key holding its holder's id, with an expiry the holder renews).

The Igor broker (L{twistbridge.igor._redis}) and the bgpy broker
(L{twistbridge.bgpy._cluster}) both connect through L{RedisFactory} and
L{RecordingEndpoint} under Twisted's C{ClientService}, which reconnects with
backoff: L{RedisConnections} keeps a broker's two connections (commands and
subscriptions), built by L{RedisBrokerBase} with what both brokers set up.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, List, Optional, Set

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from twistbridge.config import BrokerAddress

__all__ = [
    "RELEASE",
    "RENEW",
    "RecordingEndpoint",
    "RedisBrokerBase",
    "RedisConnections",
    "RedisFactory",
    "broker_endpoint",
    "redis_client_available",
]

RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
"""Renew lease C{KEYS[1]} for C{ARGV[2]} ms if C{ARGV[1]} holds it (1), else 0."""

RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)
"""Delete C{KEYS[1]} if C{ARGV[1]} holds it (1), else 0."""


def redis_client_available() -> bool:
    """Whether txredisapi (the C{redis} extra) is installed."""
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        return False
    return True


def broker_endpoint(reactor: Any, address: BrokerAddress) -> Any:
    """The client endpoint to the Redis at C{address}."""
    from twisted.internet.endpoints import (
        HostnameEndpoint,
        UNIXClientEndpoint,
        wrapClientTLS,
    )

    if address.path is not None:
        return UNIXClientEndpoint(reactor, address.path, timeout=5)
    host = str(address.host)
    endpoint: Any = HostnameEndpoint(reactor, host, address.port, timeout=5)
    if address.tls:
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    return endpoint


class RedisFactory(Factory):
    """
    Builds a txredisapi protocol (commands or subscriber) for C{address}.

    @ivar error: why the last connection failed, or L{None}.
    @ivar on_message: C{(channel, message)} for a subscriber's messages.
    """

    # What txredisapi's protocol expects of its factory.
    isLazy = False

    def __init__(self, protocol_class: Any, address: BrokerAddress, charset: Any):
        self.protocol_class = protocol_class
        self.address = address
        self.charset = charset
        self.error: Optional[str] = None
        self.on_message: Callable[[bytes, bytes], None] = lambda c, m: None

    def buildProtocol(self, addr: Any) -> Any:
        """A txredisapi protocol that logs in and selects the database."""
        password: Any = self.address.password
        username: Any = self.address.username
        if self.charset is None:  # (a protocol of bytes only)
            password = None if password is None else password.encode("utf-8")
            username = None if username is None else username.encode("utf-8")
        p = self.protocol_class(
            self.charset,
            replyTimeout=5,
            password=password,
            dbid=self.address.db,
            username=username,
        )
        p.factory = self
        lost = p.connectionLost

        def connection_lost(why: Failure) -> None:
            # Kept to say why a connection that never got ready failed (a
            # TLS certificate refused, say): txredisapi only sees it lost.
            self.error = why.getErrorMessage()
            lost(why)

        p.connectionLost = connection_lost
        if hasattr(p, "messageReceived"):
            p.messageReceived = lambda pattern, channel, message: self.on_message(
                channel, message
            )
        return p

    def stopTrying(self) -> None:
        """(txredisapi calls it; C{ClientService} does the retrying.)"""

    def connectionError(self, why: str) -> None:
        """txredisapi's report of a failed login or database selection."""
        self.error = why


class RecordingEndpoint:
    """An endpoint that reports why each failed connection attempt failed."""

    def __init__(self, endpoint: Any, unreachable: Callable[[str], None]) -> None:
        self._endpoint = endpoint
        self._unreachable = unreachable

    def connect(self, factory: Any) -> Deferred:
        """Connect; a failure is reported to C{unreachable}, then passed on."""
        d = self._endpoint.connect(factory)

        def failed(f: Failure) -> Failure:
            self._unreachable(f.getErrorMessage() or f.type.__name__)
            return f

        return d.addErrback(failed)


class RedisConnections:
    """
    A broker's two connections to Redis, one for commands and one subscribed
    to its channels, each under Twisted's C{ClientService} (reconnecting
    with backoff).  C{unreachable(why)} is told why an attempt failed or a
    connection was lost before it was ready; C{lost(protocol)} of each loss
    of a ready one.
    """

    #: Seconds L{stop} waits for a connection being made ready.
    STOP_WAIT = 2.0

    def __init__(
        self,
        reactor: Any,
        address: BrokerAddress,
        unreachable: Callable[[str], None],
        lost: Callable[[Any], Any],
    ) -> None:
        self.reactor = reactor
        self.address = address
        self._unreachable = unreachable
        self._lost = lost
        self._services: List[ClientService] = []
        self._preparing: Set[Deferred] = set()

    def start(
        self,
        on_message: Callable[[bytes, bytes], None],
        commands_ready: Callable[[Any], Deferred],
        subscriber_ready: Callable[[Any], Deferred],
    ) -> None:
        """
        Connect both: C{commands_ready(protocol)} and
        C{subscriber_ready(protocol)} run on each (re)connection once it is
        ready (see L{prepared}); C{on_message(channel, message)} gets what
        the subscriptions receive.
        """
        import txredisapi

        policy = backoffPolicy(initialDelay=0.2, maxDelay=5.0)
        commands = RedisFactory(txredisapi.RedisProtocol, self.address, "utf-8")
        subscriber = RedisFactory(txredisapi.SubscriberProtocol, self.address, None)
        subscriber.on_message = on_message
        for factory, ready in (
            (commands, commands_ready),
            (subscriber, subscriber_ready),
        ):
            endpoint: Any = RecordingEndpoint(
                broker_endpoint(self.reactor, self.address), self._unreachable
            )
            service = ClientService(
                endpoint,
                factory,
                retryPolicy=policy,
                prepareConnection=self._tracked(ready),
            )
            service.startService()
            self._services.append(service)

    def _tracked(self, ready: Callable[[Any], Deferred]) -> Callable[[Any], Deferred]:
        # A stop while a connection is being made ready would cancel its
        # preparation and leave the connection open, and its later loss
        # then reaches a stopped ClientService (which raises): stop() waits
        # for these first.
        def prepare(protocol: Any) -> Deferred:
            d = ready(protocol)
            self._preparing.add(d)

            def done(result: Any) -> Any:
                self._preparing.discard(d)
                return result

            return d.addBoth(done)

        return prepare

    async def prepared(self, protocol: Any) -> None:
        """
        Wait until C{protocol} is ready (logged in, database selected), then
        have its loss reported to C{lost(protocol)}.

        @raise ConnectionError: it was lost before it was ready (so that
            C{ClientService} tries again); C{unreachable} has been told why.
        """
        lost = protocol.whenDisconnected()
        await defer.DeferredList(
            [protocol.whenConnected(), lost], fireOnOneCallback=True, consumeErrors=True
        )
        if not getattr(protocol, "_ready", False):
            why = protocol.factory.error or "connection lost before it was ready"
            self._unreachable(why)
            raise ConnectionError(why)
        lost.addCallback(self._lost)

    def stop(self) -> Deferred:
        """Disconnect both, once the preparations in flight have ended."""

        async def stop() -> None:
            if self._preparing:
                waiting = defer.DeferredList(list(self._preparing), consumeErrors=True)
                bound = self.reactor.callLater(self.STOP_WAIT, waiting.cancel)
                try:
                    await waiting
                except defer.CancelledError:
                    pass
                if bound.active():
                    bound.cancel()
            services, self._services = self._services, []
            await defer.gatherResults([s.stopService() for s in services])

        return defer.ensureDeferred(stop())


class RedisBrokerBase:
    """
    What the Igor and the bgpy brokers set up alike: the reactor (the
    global one by default), a random instance id (new each start), the
    prefix of their names in Redis (C{twistbridge:<db>:<kind>:}), the state
    for C{/health}, and their L{RedisConnections}, which report to the
    subclass's C{_unreachable(why)} and C{_lost(protocol)}.

    @ivar instance: this instance's id.
    @ivar up: both connections to Redis are ready.
    @ivar reason: why it is not up (C{/health}).
    """

    def __init__(self, address: BrokerAddress, reactor: Any, kind: str) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.address = address
        self.instance = uuid.uuid4().hex
        self.prefix = f"twistbridge:{address.db}:{kind}:"
        self.up = False
        self.reason = "connecting to Redis"
        self._commands: Any = None
        self._subscriber: Any = None
        self._redis = RedisConnections(reactor, address, self._unreachable, self._lost)

    def _unreachable(self, why: str) -> None:
        raise NotImplementedError

    def _lost(self, protocol: Any) -> None:
        raise NotImplementedError
