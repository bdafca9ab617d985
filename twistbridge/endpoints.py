"""
Endpoint descriptions: the one way an address becomes the string that
C{twisted.internet.endpoints.serverFromString} reads::

    endpoint_description(5020)                  tcp:5020:interface=127.0.0.1
    endpoint_description(("::1", "5020"))       tcp:5020:interface=\\:\\:1
    endpoint_description("/run/bridge.sock")    unix:/run/bridge.sock
    endpoint_description(("0.0.0.0", 443), "ssl", privateKey="k.pem")
                                                ssl:443:interface=0.0.0.0:privateKey=k.pem

Every value is quoted (L{quote}), so an IPv6 address or a path holding
C{:}, C{=} or C{\\} reaches Twisted as it was given.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.endpoints import quoteStringArgument

__all__ = ["endpoint_description", "listen_description", "quote"]

#: The interface a bare port number binds.
LOOPBACK = "127.0.0.1"


def quote(value: Any) -> str:
    """
    C{value} as one argument of an endpoint description: C{\\} and C{:}
    escaped as by L{quoteStringArgument}, and C{=} too (else the parser
    would take C{a=b} for a keyword argument, or cut a value at its C{=}).
    """
    return quoteStringArgument(str(value)).replace("=", "\\=")


def _port_number(port: Any) -> int:
    if isinstance(port, bool):
        raise ValueError(f"not a port number: {port!r}")
    try:
        number = int(str(port).strip())
    except ValueError:
        raise ValueError(f"not a port number: {port!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError("a port number is 0-65535 (0: any free port)")
    return number


def endpoint_description(address: Any, kind: str = "tcp", **options: Any) -> str:
    """
    The server endpoint description of C{address}.

    @param address: a port (an C{int}, or digits in a C{str}): that port on
        L{LOOPBACK}; a C{(host, port)} pair: that port on the interface
        C{host} (C{""}: every interface), an IPv4 or IPv6 address or a name;
        or a UNIX socket path (a C{str} that is not a port).
    @param kind: the endpoint type of a C{(host, port)} address (C{"tcp"},
        C{"ssl"}, ...); a path is always C{unix}.
    @param options: further keyword arguments of the description
        (C{privateKey=...}), quoted too, in the order given.
    @raise ValueError: for a port that is not a number from 0 to 65535.
    """
    if isinstance(address, (tuple, list)):
        host, port = address[0], address[1]
        parts = [kind, str(_port_number(port)), f"interface={quote(host)}"]
    elif isinstance(address, int) or str(address).strip().isdigit():
        parts = [kind, str(_port_number(address)), f"interface={LOOPBACK}"]
    else:
        parts = ["unix", quote(address)]
    parts += [f"{key}={quote(value)}" for key, value in options.items()]
    return ":".join(parts)


def listen_description(value: Any) -> Optional[str]:
    """
    Turn a listener setting (C{port}, C{igor_port}, C{bgpy_port}) into an
    endpoint description, or L{None} for off.

    A bare port number binds 127.0.0.1 (L{endpoint_description}); C{"none"}
    switches the listener off; anything else is taken as a Twisted endpoint
    description.
    """
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() == "none":
        return None
    if isinstance(value, int) or text.isdigit():
        return endpoint_description(text)
    return text
