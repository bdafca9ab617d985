"""
Parsing of large Igor messages, in a pool thread, by the bounded decoder of
L{twistbridge._json}: a message holding more than L{MAX_CONTAINERS} arrays
and objects is refused, and a dense one lets the reactor thread run.
"""

from __future__ import annotations

from typing import Union

from twistbridge._json import (
    C_PARSER_BUDGET,
    MAX_CONTAINERS,
    TooManyContainers,
    cost,
    loads_bounded,
)
from twistbridge.igor._core import NOT_JSON, ProtocolError, Request, request_from

#: Messages up to this many bytes are parsed in the reactor thread; larger
#: ones are parsed by L{parse_large} in a pool thread.
INLINE_LIMIT = 64 * 1024

__all__ = ["INLINE_LIMIT", "MAX_CONTAINERS", "C_PARSER_BUDGET", "cost", "parse_large"]


def parse_large(
    payload: bytes, max_containers: int = MAX_CONTAINERS
) -> Union[Request, ProtocolError]:
    """
    Validate one large message (any thread; never raises).

    @return: a L{Request}, or a L{ProtocolError} saying what is wrong.
    """
    try:
        message = loads_bounded(payload, max_containers)
    except TooManyContainers:
        return ProtocolError(
            400, f"Message holds more than {max_containers} arrays and objects"
        )
    except (ValueError, TypeError, RecursionError):
        return NOT_JSON
    return request_from(message)
