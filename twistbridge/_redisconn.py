"""
What every part sharing a Redis broker needs (the C{broker} setting,
C{--broker redis://host:port/db}): the endpoint to Redis (TCP, TLS or a unix
socket), txredisapi's protocols built for it, and the Lua scripts of the
leases (a key holding its holder's id, with an expiry the holder renews).

The Igor broker (L{twistbridge.igor._redis}) and the bgpy broker
(L{twistbridge.bgpy._cluster}) both connect through L{RedisFactory} and
L{RecordingEndpoint} under Twisted's C{ClientService}, which reconnects with
backoff.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from twistbridge.config import BrokerAddress

__all__ = [
    "RELEASE",
    "RENEW",
    "RecordingEndpoint",
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
