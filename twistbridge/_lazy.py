"""
Package attributes imported on first use.

The protocol packages' C{__init__} modules offer the compatibility classes
(C{from twistbridge.igor import IgorServer}), whose modules import Twisted
and the whole server.  Importing a pure core (C{twistbridge.igor._core})
runs its package's C{__init__} first, so those names are bound lazily: the
core stays free of Twisted, and the import graph points down.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Iterable


def lazy_attributes(
    package: str, names: Iterable[str], load: Callable[[], ModuleType]
) -> Callable[[str], Any]:
    """
    A module C{__getattr__} for C{package} answering C{names} from the
    module C{load()} returns (imported on the first such lookup).
    """
    wanted = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name not in wanted:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(load(), name)

    return __getattr__
