"""Settings: the one name of every option, with its default and parser.

Every setting is a field of L{Settings}.  The same name (with ``-`` for ``_``)
is the ``twistd bridge`` option and the keyword of L{twistbridge.Bridge}.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Optional, Tuple, Union

_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

#: The settings that are byte counts (digits with an optional K/M/G suffix).
SIZE_SETTINGS = (
    "max_upload_size",
    "max_request_size",
    "max_message_size",
    "max_upload_disk",
    "min_body_rate",
)


#: A listener setting: a port number, an endpoint description, or L{None}
#: (or C{"none"}) for no listener.
Listen = Union[int, str, None]


def parse_size(value: object) -> int:
    """
    Parse a byte count: an integer, or digits with a K, M or G suffix.

    @raise ValueError: when C{value} is not a size.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"negative size: {value}")
        return value
    match = _SIZE.match(str(value))
    if match is None:
        raise ValueError(f"not a size (bytes, or a number with K/M/G): {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


@dataclass(frozen=True)
class Settings:
    """
    Every configurable value of a bridge.

    @ivar port: the HTTP listener (izzati, JSON-RPC, WebSocket at C{/ws}).
    @ivar igor_port: the standalone Igor WebSocket listener, or C{"none"}.
    @ivar bgpy_port: the bgpy task listener, or C{"none"}.
    @ivar metrics_port: the listener serving Prometheus C{GET /metrics}, or
        L{None}/C{"none"} (the default: no metrics).
    @ivar max_upload_size: izzati request body limit in bytes.
    @ivar max_request_size: JSON-RPC request body limit in bytes.
    @ivar max_message_size: Igor message and bgpy frame limit in bytes.
    @ivar header_timeout: seconds to send complete HTTP request headers.
    @ivar idle_timeout: seconds an HTTP connection may stay silent.
    @ivar igor_allowed_origin: extra WebSocket origins to accept.
    @ivar bgpy_init_file: a Python file holding bgpy tasks.
    @ivar bgpy_allow_module: modules whose task functions bgpy clients may name.
    @ivar bgpy_token_file: a file holding the bgpy token.
    @ivar bgpy_token: the bgpy token itself (else C{BGPY_TOKEN}).
    @ivar threads: handler thread pool size.
    @ivar processes: process pool size.
    @ivar call_timeout: seconds a process-pool call may run before its
        worker is killed and replaced (0 or L{None}: no limit).
    @ivar max_connections: open connections allowed per listener (0: no limit).
    @ivar max_connections_per_client: open connections allowed per listener
        from one client address (0: no limit).
    @ivar message_timeout: seconds a WebSocket handshake or a bgpy message may
        take to arrive complete once it has started.
    @ivar shutdown_timeout: seconds to drain on SIGTERM.
    @ivar log_format: C{"text"} or C{"json"}.
    @ivar allowed_host: extra HTTP C{Host} names to accept, besides the
        loopback names and the machine's own addresses.
    @ivar max_upload_disk: temp disk all in-flight uploads together may hold.
    @ivar min_body_rate: bytes per second a request body must keep up,
        averaged over C{idle_timeout} (0: no minimum).
    @ivar max_queued: calls that may wait per offload pool before new ones
        are answered "server busy" (0: no limit).
    @ivar igor_takeover: C{"name"} (a reconnecting Igor client takes over a
        session by its client id, as Igor does) or C{"token"} (only with the
        resume token the server handed out).
    @ivar reload: development only: restart the server when the app's files
        change (C{twistd -n bridge --reload}).
    @ivar broker: where the bridge instances sharing Igor clients meet: a
        Redis URL (C{redis://host:port/db}, C{rediss://...}, or
        C{unix:///path/to.sock?db=N}; see L{parse_broker}), or L{None} (the
        default: this process only, the in-process broker).
    @ivar workers: C{twistd bridge} only: the reactor processes sharing the
        listening sockets (1, the default: this process serves alone; more
        needs a shared C{broker}, see L{twistbridge.workers}).
    """

    port: Listen = 5020
    igor_port: Listen = 5678
    bgpy_port: Listen = 54321
    metrics_port: Optional[Listen] = None
    max_upload_size: int = 1024**3
    max_request_size: int = 16 * 1024**2
    max_message_size: int = 16 * 1024**2
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    igor_allowed_origin: Tuple[str, ...] = ()
    bgpy_init_file: Optional[str] = None
    bgpy_allow_module: Tuple[str, ...] = ()
    bgpy_token_file: Optional[str] = None
    bgpy_token: Optional[str] = None
    threads: int = 10
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    call_timeout: Optional[float] = 300.0
    max_connections: int = 4096
    max_connections_per_client: int = 512
    message_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    log_format: str = "text"
    allowed_host: Tuple[str, ...] = ()
    max_upload_disk: int = 4 * 1024**3
    min_body_rate: int = 1024
    max_queued: int = 1000
    igor_takeover: str = "name"
    reload: bool = False
    broker: Optional[str] = None
    workers: int = 1

    def __post_init__(self) -> None:
        for name in SIZE_SETTINGS:
            object.__setattr__(self, name, parse_size(getattr(self, name)))
        for name in ("igor_allowed_origin", "bgpy_allow_module", "allowed_host"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        for name in ("max_connections", "max_connections_per_client", "max_queued"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more")
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("threads", "processes", "workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.call_timeout is not None:
            timeout = float(self.call_timeout)
            object.__setattr__(self, "call_timeout", timeout if timeout > 0 else None)
        if self.igor_takeover not in ("name", "token"):
            raise ValueError(
                f"igor_takeover must be 'name' or 'token': {self.igor_takeover}"
            )
        if self.broker is not None and str(self.broker).lower() == "none":
            object.__setattr__(self, "broker", None)
        if self.broker is not None:
            parse_broker(self.broker)
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json': {self.log_format}")

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        """The name of every setting."""
        return tuple(f.name for f in fields(cls))

    def updated(self, **changes: Any) -> Settings:
        """A copy with C{changes} applied (and validated)."""
        return replace(self, **changes)

    def token(self) -> Optional[str]:
        """
        The bgpy token: from the token file, else the configuration, else
        the C{BGPY_TOKEN} environment variable; L{None} when none is set.

        @raise TokenFileError: when the token file is unreadable or empty.
        """
        if self.bgpy_token_file:
            return read_token_file(self.bgpy_token_file)
        if self.bgpy_token:
            return self.bgpy_token
        return os.environ.get("BGPY_TOKEN") or None


@dataclass(frozen=True)
class BrokerAddress:
    """
    Where the Redis broker is (L{parse_broker}).

    @ivar tls: C{rediss://}: TLS to the server.
    @ivar host: the server's host name (TCP), else L{None}.
    @ivar port: its TCP port (6379 unless given).
    @ivar path: the UNIX socket path (C{unix://}), else L{None}.
    @ivar db: the database number.
    @ivar password: from the URL's C{user:password@}, else L{None}.
    @ivar username: from the URL's C{user:password@} (ACL users), else L{None}.
    """

    tls: bool
    host: Optional[str]
    port: int
    path: Optional[str]
    db: int
    password: Optional[str] = None
    username: Optional[str] = None

    def describe(self) -> str:
        """The address without its password, for logs and C{/health}."""
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"


_BROKER_FORMS = (
    "redis://host:port/db, rediss://host:port/db or unix:///path/to.sock?db=N"
)


def parse_broker(url: str) -> BrokerAddress:
    """
    Parse the C{broker} setting.

    @raise ValueError: saying which forms are accepted.
    """
    from urllib.parse import parse_qs, unquote, urlsplit

    text = str(url).strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"broker: {e} in {text!r} (use {_BROKER_FORMS})") from None
    scheme = parts.scheme.lower()
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if scheme == "unix":
        query = parse_qs(parts.query)
        db_text = query.get("db", ["0"])[0]
        if not parts.path or not db_text.isdigit():
            raise ValueError(
                f"broker: {text!r} needs a socket path and a numeric db "
                f"(use {_BROKER_FORMS})"
            )
        return BrokerAddress(
            False, None, 0, parts.path, int(db_text), password, username
        )
    if scheme in ("redis", "rediss"):
        db_text = parts.path.strip("/") or "0"
        if not parts.hostname or not db_text.isdigit():
            raise ValueError(
                f"broker: {text!r} needs a host and a numeric db (use {_BROKER_FORMS})"
            )
        return BrokerAddress(
            scheme == "rediss",
            parts.hostname,
            port or 6379,
            None,
            int(db_text),
            password,
            username,
        )
    raise ValueError(f"broker: not a Redis URL: {text!r} (use {_BROKER_FORMS})")


#: Set in the environment of a worker process of C{--workers} (its number,
#: from 1): it serves, it does not supervise again.
WORKER_ENV = "TWISTBRIDGE_WORKER"


def worker_identity(environ: Any = None) -> Optional[Dict[str, int]]:
    """
    C{{"index": n, "pid": pid}} in a worker process of C{--workers} (for
    C{/health}), else L{None}.
    """
    environ = os.environ if environ is None else environ
    index = str(environ.get(WORKER_ENV) or "")
    if not index.isdigit():
        return None
    return {"index": int(index), "pid": os.getpid()}


class TokenFileError(OSError):
    """The bgpy token file cannot be used: unreadable, not text, or empty."""


def read_token_file(path: str) -> str:
    """
    The token held in C{path} (surrounding whitespace removed).

    An empty file is an error, not "no token": a token file that lost its
    content must never turn authentication off.

    @raise TokenFileError: saying why in a few words.
    """
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except UnicodeDecodeError:
        raise TokenFileError("not UTF-8 text") from None
    except OSError as e:
        raise TokenFileError(e.strerror or str(e)) from None
    if not token:
        raise TokenFileError("the file is empty (it must hold the token)")
    return token
