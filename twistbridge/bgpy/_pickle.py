"""
The restricted unpickler: the only place where twistbridge reads a pickle
from the network (the bgpy wire format, SPEC section 6).

What a pickle may name (its globals):

    - C{bgpy.core.message.Message} and C{bgpy.core.message.MessageType},
      which resolve to twistbridge's own L{Message} and L{MessageType}
      (bgpy need not be installed);
    - once the connection is authenticated, plain functions defined in a
      module the operator allowed (C{--bgpy-allow-module},
      C{Bridge.bgpy_tasks(..., allow_modules=...)}, the module of
      C{--bgpy-init-file}): bgpy's C{Client.initialize()} sends its tasks
      this way, by reference.

Anything else ends the decoding with a L{RefusedGlobal}.  A function is
never handed to the pickle machinery itself: it comes out as an inert
L{TaskRef} (not callable, not a type, not modifiable), so a pickle cannot
call it while loading (C{REDUCE}); only the three INIT task slots are turned
into the functions afterwards.  L{MessageType} members and the two classes
refuse pickle's C{BUILD}, so a pickle cannot alter them either.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
import re
import sys
from typing import Any, Callable, Collection, Union

from twistbridge.bgpy._core import (
    BGPY_MODULE,
    TASK_KEYS,
    BgpyError,
    Message,
    MessageType,
    unbase64,
)
from twistbridge.bgpy._vet import vet_message

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that is not allowed."""


class TaskRef:
    """
    An inert stand-in for an allowed task function while a pickle loads.

    @ivar module: the module name.
    @ivar name: the function name.
    @ivar func: the function.
    """

    __slots__ = ("module", "name", "func")

    def __init__(self, module: str, name: str, func: Callable[..., Any]) -> None:
        self.module = module
        self.name = name
        self.func = func

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("task references cannot be modified")

    def __repr__(self) -> str:
        return f"<task {self.module}.{self.name}>"


def load_task(module: str, name: str) -> Callable[..., Any]:
    """
    The function C{name} defined in C{module} (imported if need be).

    @raise RefusedGlobal: when it is not a plain public function defined
        there (a name imported into the module, such as C{os.system}, is
        refused).
    """
    if not _NAME.match(name):
        raise RefusedGlobal(f"'{module}.{name}' is not a public function name")
    try:
        mod = sys.modules.get(module) or importlib.import_module(module)
    except Exception as e:
        raise RefusedGlobal(
            f"allowed module '{module}' cannot be imported: {e}"
        ) from None
    func = getattr(mod, name, None)
    if not inspect.isfunction(func) or func.__module__ != module:
        raise RefusedGlobal(
            f"'{module}.{name}' is not a function defined in '{module}'"
        )
    return func


class RestrictedUnpickler(pickle.Unpickler):
    """
    A C{pickle.Unpickler} whose L{find_class} answers only what this
    module's docstring lists.

    @ivar allow_modules: modules whose functions may be named.
    @ivar authenticated: whether those functions may be named yet.
    """

    def __init__(
        self, data: bytes, allow_modules: Collection[str], authenticated: bool
    ) -> None:
        super().__init__(io.BytesIO(data))
        self.allow_modules = allow_modules
        self.authenticated = authenticated

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global, or refuse it."""
        if module == BGPY_MODULE and name == "Message":
            return Message
        if module == BGPY_MODULE and name == "MessageType":
            return MessageType
        if self.authenticated and module in self.allow_modules:
            return TaskRef(module, name, load_task(module, name))
        if module in self.allow_modules:
            raise RefusedGlobal(f"'{module}.{name}' may only be sent after AUTH")
        raise RefusedGlobal(f"'{module}.{name}' is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are never accepted."""
        raise RefusedGlobal("persistent ids are not allowed")


def loads_message(
    data: bytes, allow_modules: Collection[str] = (), authenticated: bool = False
) -> Union[Message, BgpyError]:
    """
    Unpickle one bgpy message; every failure is a fatal L{BgpyError}.

    The INIT task slots holding allowed functions come back as the
    functions; any other L{TaskRef} stays inert.
    """
    refused = vet_message(data)
    if refused is not None:
        return refused
    try:
        obj = RestrictedUnpickler(data, allow_modules, authenticated).load()
    except RefusedGlobal as e:
        return BgpyError(f"Refused: {e}.", True)
    except Exception as e:  # any malformed pickle: truncated, bad opcodes, ...
        return BgpyError(f"Invalid message: {type(e).__name__}: {e}.", True)
    if (
        type(obj) is not Message
        or not hasattr(obj, "type")
        or not isinstance(obj.type, MessageType)
        or not isinstance(getattr(obj, "args", None), dict)
    ):
        return BgpyError(
            "Invalid message: not a bgpy Message with a dict of args.", True
        )
    if obj.type is MessageType.INIT:
        for key in TASK_KEYS:
            value = obj.args.get(key)
            if isinstance(value, TaskRef):
                obj.args[key] = value.func
    return obj


def decode_frame(
    body: bytes, allow_modules: Collection[str] = (), authenticated: bool = False
) -> Union[Message, BgpyError]:
    """A bgpy frame body (base64 of a pickle) to a L{Message}, or an error."""
    raw = unbase64(body)
    if isinstance(raw, BgpyError):
        return raw
    return loads_message(raw, allow_modules, authenticated)
