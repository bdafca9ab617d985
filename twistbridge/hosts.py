"""
Which HTTP C{Host} names a listener answers (the defence against DNS
rebinding).

A page on C{http://evil.example:5020/} whose name an attacker makes resolve
to C{127.0.0.1} is same-origin with everything it then loads from that
address, so a server on loopback must not answer requests that name a host
it does not know.  Allowed by default: the loopback names (C{localhost}, any
C{*.localhost}, any C{127.x.y.z}, C{[::1]}), the machine's own host name and
its addresses, and the address the connection arrived on; a request without
a C{Host} (HTTP/1.0) too.  The C{allowed_host} setting adds names (C{*}
allows every host, C{*.example.com} every name under C{example.com}).

L{host_allowed} is the pure rule; L{machine_names} asks the system, and may
block on the resolver (call it from a thread).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from typing import Iterable, Optional, Tuple

__all__ = [
    "host_allowed",
    "machine_names",
    "refusal_message",
    "split_host",
]


def split_host(host: str) -> Tuple[str, Optional[str]]:
    """
    C{"Name:port"} (or C{"[::1]:port"}) as C{("name", "port")}: the name
    lower-cased, without brackets or a final dot; the port L{None} when
    there is none.
    """
    host = host.strip()
    port: Optional[str] = None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host.lower(), None
        name, rest = host[1:end], host[end + 1 :]
        if rest.startswith(":"):
            port = rest[1:]
    elif host.count(":") == 1:
        name, port = host.split(":", 1)
    else:
        name = host  # a bare IPv6 address, or a plain name
    return name.rstrip(".").lower(), port


@lru_cache(maxsize=256)
def _loopback(name: str) -> bool:
    # Cached: ipaddress parses the name of every request's Host header
    # otherwise (a few microseconds each); bounded, as clients choose it.
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _pattern_matches(pattern: str, name: str, port: Optional[str]) -> bool:
    if pattern == "*":
        return True
    want, want_port = split_host(pattern)
    if want_port is not None and want_port != port:
        return False
    if want.startswith("*."):
        return name.endswith(want[1:])
    return name == want


def host_allowed(
    host: Optional[str], allowed: Iterable[str] = (), local: Iterable[str] = ()
) -> bool:
    """
    Whether a request whose C{Host} header is C{host} may be answered.

    @param host: the header's value (L{None}: no header, allowed).
    @param allowed: the extra names of the C{allowed_host} setting; each a
        name, optionally with C{:port}; C{*} or C{*.domain} patterns.
    @param local: names and addresses of this machine (L{machine_names},
        the address the connection arrived on), any port.
    """
    if host is None:
        return True
    name, port = split_host(host)
    if not name or (port is not None and not port.isdigit()):
        return False
    if _loopback(name) or name in set(split_host(n)[0] for n in local):
        return True
    return any(_pattern_matches(p, name, port) for p in allowed)


def machine_names() -> Tuple[str, ...]:
    """
    The machine's host name, its fully qualified name and every address
    they resolve to (asks the resolver: may block).
    """
    names = {socket.gethostname()}
    try:
        names.add(socket.getfqdn())
    except OSError:  # pragma: no cover - a broken resolver
        pass
    for name in list(names):
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError:
            continue
        names.update(str(info[4][0]).split("%", 1)[0] for info in infos)
    return tuple(sorted(n.lower() for n in names if n))


def refusal_message(host: str) -> str:
    """The text a refused client gets: what was refused and how to allow it."""
    name, _ = split_host(host)
    return (
        f"Host {host!r} is not served here; if this server should answer it "
        f"(behind a reverse proxy, say), start it with --allowed-host {name}"
    )
