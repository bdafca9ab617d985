"""
The helpers of flaskJSONRPCServer's C{utils} module that programs written
for it import (C{from flaskJSONRPCServer.utils import MagicDictCold, bind}
becomes C{from twistbridge.jsonrpc.utils import MagicDictCold, bind}).
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Callable, Dict, Optional

from twistbridge.jsonrpc._compathttp import format_path as formatPath
from twistbridge.jsonrpc._dispatch import AttrDict
from twistbridge.jsonrpc._magic import getms
from twistbridge.jsonrpc._magic import script_path as getScriptPath

__all__ = [
    "MagicDict",
    "MagicDictCold",
    "bind",
    "formatPath",
    "getScriptPath",
    "getms",
    "magicDict",
    "magicDictCold",
]


class MagicDict(AttrDict):
    """A dict whose keys are also attributes (C{d.name} is C{d["name"]})."""

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class MagicDictCold(MagicDict):
    """
    A L{MagicDict} that can be frozen: C{d._MagicDictCold__freeze()} makes
    every change raise C{RuntimeError("Frozen")} until
    C{d._MagicDictCold__unfreeze()}.
    """

    _frozen = False

    def __freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __unfreeze(self) -> None:
        object.__setattr__(self, "_frozen", False)

    def _check(self) -> None:
        if self._frozen:
            raise RuntimeError("Frozen")

    def __setattr__(self, name: str, value: Any) -> None:
        self._check()
        MagicDict.__setattr__(self, name, value)

    def __setitem__(self, name: str, value: Any) -> None:
        self._check()
        MagicDict.__setitem__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._check()
        MagicDict.__delattr__(self, name)

    def __delitem__(self, name: str) -> None:
        self._check()
        MagicDict.__delitem__(self, name)


magicDict = MagicDict
magicDictCold = MagicDictCold


def bind(
    f: Callable[..., Any],
    defaultsUpdate: Optional[Dict[str, Any]] = None,
    globalsUpdate: Optional[Dict[str, Any]] = None,
    name: Optional[str] = None,
) -> Callable[..., Any]:
    """
    A copy of function C{f} whose globals are C{f}'s updated with
    C{globalsUpdate} (for it alone: the module is not changed) and whose
    keyword defaults are updated with C{defaultsUpdate}.
    """
    scope = f.__globals__
    if globalsUpdate:
        scope = dict(scope)
        scope.update(globalsUpdate)
    defaults = f.__defaults__
    kwdefaults = dict(f.__kwdefaults__ or {})
    if defaultsUpdate:
        spec = inspect.getfullargspec(f)
        with_defaults = spec.args[len(spec.args) - len(defaults or ()) :]
        defaults = tuple(
            defaultsUpdate.get(arg, value)
            for arg, value in zip(with_defaults, defaults or ())
        )
        for arg in kwdefaults:
            if arg in defaultsUpdate:
                kwdefaults[arg] = defaultsUpdate[arg]
    copy = types.FunctionType(
        f.__code__, scope, name or f.__name__ + "_BINDED", defaults, f.__closure__
    )
    copy.__kwdefaults__ = kwdefaults or None
    copy.__dict__.update(f.__dict__)
    return copy
