"""
Drop-in replacement for bgpy: change C{from bgpy import ...} to
C{from twistbridge.bgpy import ...}::

    from twistbridge.bgpy import Server, Client, respond, token_create

    Server("127.0.0.1", 54321, init_file="tasks.py").run()        # blocking
    Server("127.0.0.1", 54321, init_file="tasks.py").run_background()
    Client("127.0.0.1", 54321).execute({"command": "increase", "value_change": 10})

and on the command line, as C{bgpy server} / C{terminate} / C{version}::

    python -m twistbridge.bgpy server HOST PORT [--init-file F]
        [--allow-module M]... [--token] [--log-level L] [--log-file F]
    python -m twistbridge.bgpy terminate HOST PORT [--token]
    python -m twistbridge.bgpy version

bgpy's other modules have their twins: C{twistbridge.bgpy.server},
C{.client}, C{.core.token}, C{.core.environment}, C{.core.message},
C{.core.sockets}.  The names are imported on first use (see
L{twistbridge.bgpy._compat}).
"""

from types import ModuleType
from typing import TYPE_CHECKING

from twistbridge._lazy import lazy_attributes

if TYPE_CHECKING:  # the names, for type checkers and the API reference
    from twistbridge.bgpy._compat import (
        ENV_TOKEN as ENV_TOKEN,
    )
    from twistbridge.bgpy._compat import (
        HOST,
        PORT,
        STARTUP_TIME,
        Client,
        Server,
        execute,
        initialize,
        respond,
        terminate,
        token_create,
    )

__all__ = [
    "HOST",
    "PORT",
    "STARTUP_TIME",
    "Client",
    "Server",
    "execute",
    "initialize",
    "respond",
    "terminate",
    "token_create",
]


def _load() -> ModuleType:
    from twistbridge.bgpy import _compat

    return _compat


__getattr__ = lazy_attributes(__name__, [*__all__, "ENV_TOKEN"], _load)
