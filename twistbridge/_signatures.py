"""
The call shape of each protocol's handlers, checked when a handler is
registered: a handler that could not be called the way its protocol calls
it is refused then, with a message naming it, what it must accept and an
example, rather than failing at its first call::

    izzati callback      callback(text, data, *args, **kwargs)
    Igor action          handler(out, data, session=, scope=, client_id=)
    bgpy init_task       init_task(client)  (or init_task())
    bgpy exec_task       exec_task(client, state, exec_args)
    bgpy exit_task       exit_task(client, state, exit_args)
    JSON-RPC method      any (its parameters are what clients send)
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Optional, Sequence

__all__ = [
    "RegistrationError",
    "check_bgpy_task",
    "check_igor_action",
    "check_izzati_callback",
]

#: The keyword arguments the Igor hub passes every action.
IGOR_KWARGS = ("session", "scope", "client_id")


class RegistrationError(TypeError):
    """
    A handler cannot be registered: it cannot be called the way its protocol
    calls it, the decorator was misused, or the name is already taken.
    """


def _signature(func: Callable[..., object]) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without one: not checkable
        return None


def _name(func: object) -> str:
    name = getattr(func, "__name__", None)
    if not isinstance(name, str):
        name = type(func).__name__
    return name


def _refuse(
    func: object, signature: inspect.Signature, role: str, shape: str, default: str
) -> RegistrationError:
    name = _name(func)
    example = name if name.isidentifier() else default
    example_shape = shape.replace("=...", "=None")
    return RegistrationError(
        f"{name}{signature} cannot be {role}: it must accept {shape}, "
        f"e.g. def {example}{example_shape}"
    )


def _binds(signature: inspect.Signature, *args: object, **kwargs: object) -> bool:
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def check_izzati_callback(
    func: Callable[..., object],
    args: Sequence[object] = (),
    kwargs: Optional[Dict[str, object]] = None,
) -> None:
    """
    Check that C{func(text, data, *args, **kwargs)} can be called.

    @raise RegistrationError: naming C{func}, the shape it must accept and an example.
    """
    kwargs = kwargs or {}
    signature = _signature(func)
    if signature is None or _binds(signature, None, None, *args, **kwargs):
        return
    extra = [f"arg{i}" for i in range(1, len(args) + 1)]
    extra += [f"{k}=..." for k in kwargs]
    shape = "(" + ", ".join(["text", "data", *extra]) + ")"
    raise _refuse(func, signature, "the izzati callback", shape, "upload")


def check_igor_action(func: Callable[..., object]) -> None:
    """
    Check that C{func(out, data, session=, scope=, client_id=)} can be called.

    @raise RegistrationError: naming C{func}, the shape it must accept and an example.
    """
    signature = _signature(func)
    if signature is None or _binds(signature, None, None, **dict.fromkeys(IGOR_KWARGS)):
        return
    raise _refuse(func, signature, "an Igor action", "(out, data, **kwargs)", "action")


_BGPY_SHAPES = {
    "init_task": "(client)",
    "exec_task": "(client, state, exec_args)",
    "exit_task": "(client, state, exit_args)",
}


def check_bgpy_task(kind: str, func: Callable[..., object]) -> None:
    """
    Check that the bgpy task C{kind} (C{"init_task"}, C{"exec_task"},
    C{"exit_task"}) can be called as bgpy calls it.

    @raise RegistrationError: naming C{func}, the shape it must accept and an example.
    """
    if not callable(func):
        raise RegistrationError(f"the bgpy {kind} {func!r} is not callable")
    signature = _signature(func)
    if signature is None:
        return
    if kind == "init_task":
        ok = _binds(signature, None) or _binds(signature)
    else:
        ok = _binds(signature, None, None, None)
    if not ok:
        raise _refuse(func, signature, f"the bgpy {kind}", _BGPY_SHAPES[kind], kind)
