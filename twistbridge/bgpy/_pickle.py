"""
The restricted unpickler: the only place where twistbridge reads a pickle
from the network (the bgpy wire format).

What a pickle may name (its globals):

    - C{bgpy.core.message.Message} and C{bgpy.core.message.MessageType},
      which resolve to twistbridge's own L{Message} and L{MessageType}
      (bgpy need not be installed);
    - once the connection is authenticated, plain functions (never
      builtins, C functions or classes) defined in a module the
      L{TaskPolicy} allows: the operator's (C{--bgpy-allow-module},
      C{Bridge.bgpy_tasks(..., allow_modules=...)}), the init file's, and,
      for a client that sent the configured token when the operator named
      no module, any importable public one.  bgpy's C{Client.initialize()}
      sends its tasks this way, by reference.

Anything else ends the decoding with a refusal saying what would allow it.
A function is never handed to the pickle machinery itself: it comes out as
an inert L{TaskRef} (not callable, not a type, not modifiable), so a pickle
cannot call it while loading (C{REDUCE}); only the three INIT task slots
are turned into the functions afterwards.  A refused task in those slots
comes out as an inert L{RefusedTask}, so that the INIT is answered "Already
initialized." before the refusal.  L{MessageType} members and the two
classes refuse pickle's C{BUILD}, so a pickle cannot alter them either.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
import re
import sys
from typing import Any, Callable, Collection, Dict, Iterator, List, Optional, Union

from twistbridge.bgpy._core import (
    BGPY_MODULE,
    BgpyError,
    Message,
    MessageType,
    unbase64,
)
from twistbridge.bgpy._tasks import TASK_KEYS, RefusedTask
from twistbridge.bgpy._vet import vet_message

NOT_PLAIN = (
    "only plain Python functions may be named (no builtins, C functions, classes)"
)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


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


def load_task(
    module: str, name: str, real_module: Optional[str] = None
) -> Callable[..., Any]:
    """
    The function C{name} defined in C{module} (imported if need be).

    @param real_module: the name the module was loaded under, when clients
        name it C{module} (the init file: C{tasks} for
        C{bgpy_example.tasks}).
    @raise RefusedGlobal: when it is not a plain public function defined
        there (a name imported into the module, such as C{os.system}, a
        builtin, a class, ... is refused).
    """
    real = real_module or module
    if not _NAME.match(name):
        raise RefusedGlobal(f"'{module}.{name}' is not a public function name")
    if not _MODULE.match(real):
        raise RefusedGlobal(f"'{module}' is not a module name")
    try:
        mod = sys.modules.get(real) or importlib.import_module(real)
    except Exception as e:
        raise RefusedGlobal(f"module '{module}' cannot be imported: {e}") from None
    # (vars(): a module's __getattr__ is code, never run for a client)
    func = vars(mod).get(name)
    if not inspect.isfunction(func):
        raise RefusedGlobal(f"'{module}.{name}' is not allowed: {NOT_PLAIN}")
    if func.__module__ != real:
        raise RefusedGlobal(
            f"'{module}.{name}' is not a function defined in '{module}'"
        )
    return func


class TaskPolicy:
    """
    Which modules a bgpy pickle may name task functions from.

        - the operator's modules (C{--bgpy-allow-module},
          C{Bridge.bgpy_tasks(allow_modules=...)}) and the init file's
          module, under every name clients use for it;
        - when a token is configured and the operator named no module: any
          importable module, for a client that authenticated with it (the
          token holder is trusted as bgpy trusts it; importing a module runs
          its code);
        - in all cases, after AUTH only, and only plain functions defined
          in that module (L{load_task}).

    It is also the collection of the modules always allowed (C{in},
    iteration).

    @ivar allow_modules: the operator's modules.
    @ivar init_modules: the init file's module: the names clients use for
        it, mapped to the name it was loaded under.
    @ivar token_configured: whether clients must authenticate with a token.
    @ivar allow_option: how the operator allows a module, for the refusal.
    @ivar token_option: how the operator sets a token, for the refusal.
    """

    def __init__(
        self,
        allow_modules: Collection[str] = (),
        init_modules: Optional[Dict[str, str]] = None,
        token_configured: bool = False,
        allow_option: str = "--bgpy-allow-module",
        token_option: str = "--bgpy-token-file / BGPY_TOKEN",
    ) -> None:
        self.allow_modules = frozenset(allow_modules)
        self.init_modules = dict(init_modules or {})
        self.token_configured = token_configured
        self.allow_option = allow_option
        self.token_option = token_option

    def __contains__(self, module: object) -> bool:
        return module in self.allow_modules or module in self.init_modules

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.allow_modules | set(self.init_modules)))

    def __repr__(self) -> str:
        return (
            f"TaskPolicy({sorted(self.allow_modules)!r}, {self.init_modules!r}, "
            f"token_configured={self.token_configured!r})"
        )

    def resolve(self, module: str, name: str, authenticated: bool) -> TaskRef:
        """
        The task C{module.name} as an inert L{TaskRef}.

        @raise RefusedGlobal: saying what would allow it.
        """
        where = f"'{module}.{name}'"
        if module in self:
            if not authenticated:
                raise RefusedGlobal(f"{where} may only be sent after AUTH")
            real = self.init_modules.get(module, module)
            return TaskRef(module, name, load_task(module, name, real))
        if self.token_configured and not self.allow_modules:
            if not authenticated:
                raise RefusedGlobal(
                    f"{where} is not allowed before AUTH: authenticate "
                    "with the server's token first"
                )
            if any(part.startswith("_") for part in module.split(".")):
                # (__main__, the server itself; private modules)
                raise RefusedGlobal(
                    f"{where} is not allowed: '{module}' is not a public module"
                )
            return TaskRef(module, name, load_task(module, name))
        raise RefusedGlobal(self.refusal(module, name))

    def refusal(self, module: str, name: str) -> str:
        """Why C{module.name} is refused, and what would allow it."""
        loaded = sys.modules.get(module)
        if loaded is not None:  # (never imported for the question)
            func = vars(loaded).get(name)
            if not inspect.isfunction(func) or func.__module__ != module:
                return f"'{module}.{name}' is not allowed: {NOT_PLAIN}"
        where = f"'{module}.{name}' is not allowed: start the server with "
        allow = f"{self.allow_option} {module}"
        if self.allow_modules:
            return f"{where}{allow} (allowed now: {', '.join(self)})"
        return f"{where}{allow}, or set a token ({self.token_option}) and authenticate"


def as_policy(allow_modules: Union[TaskPolicy, Collection[str]]) -> TaskPolicy:
    """A L{TaskPolicy}; a plain collection is the operator's modules."""
    if isinstance(allow_modules, TaskPolicy):
        return allow_modules
    return TaskPolicy(allow_modules)


class RestrictedUnpickler(pickle.Unpickler):
    """
    A C{pickle.Unpickler} whose L{find_class} answers only what this
    module's docstring lists.

    A task function refused after AUTH does not end the loading at once:
    it comes out as an inert L{RefusedTask}, recorded in C{refused}, so
    that an INIT can be answered "Already initialized." before the refusal.

    @ivar policy: the L{TaskPolicy}.
    @ivar authenticated: whether the connection sent the right token.
    @ivar refused: the L{RefusedTask}s made.
    """

    def __init__(
        self,
        data: bytes,
        allow_modules: Union[TaskPolicy, Collection[str]],
        authenticated: bool,
    ) -> None:
        super().__init__(io.BytesIO(data))
        self.policy = as_policy(allow_modules)
        self.authenticated = authenticated
        self.refused: List[RefusedTask] = []

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global, or refuse it."""
        if module == BGPY_MODULE and name == "Message":
            return Message
        if module == BGPY_MODULE and name == "MessageType":
            return MessageType
        try:
            return self.policy.resolve(module, name, self.authenticated)
        except RefusedGlobal as e:
            if not self.authenticated:
                raise
            refused = RefusedTask(f"Refused: {e}.")
            self.refused.append(refused)
            return refused

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are never accepted."""
        raise RefusedGlobal("persistent ids are not allowed")


def loads_message(
    data: bytes,
    allow_modules: Union[TaskPolicy, Collection[str]] = (),
    authenticated: bool = False,
) -> Union[Message, BgpyError]:
    """
    Unpickle one bgpy message; every failure is a fatal L{BgpyError}.

    The INIT task slots holding allowed functions come back as the
    functions; any other L{TaskRef} stays inert.  An INIT whose task slots
    hold refused functions (and nothing else refused) comes back with
    L{RefusedTask}s there: it is refused only if the tasks are not already
    initialized.
    """
    refused = vet_message(data)
    if refused is not None:
        return refused
    unpickler = RestrictedUnpickler(data, allow_modules, authenticated)
    try:
        obj = unpickler.load()
    except RefusedGlobal as e:
        return BgpyError(f"Refused: {e}.", True)
    except Exception as e:  # any malformed pickle: truncated, bad opcodes, ...
        if unpickler.refused:  # (calling a refused global fails, for one)
            return BgpyError(unpickler.refused[0].message, True)
        return BgpyError(f"Invalid message: {type(e).__name__}: {e}.", True)
    is_message = (
        type(obj) is Message
        and isinstance(getattr(obj, "type", None), MessageType)
        and isinstance(getattr(obj, "args", None), dict)
    )
    slots = [obj.args.get(key) for key in TASK_KEYS] if is_message else []
    if unpickler.refused and not (
        is_message
        and obj.type is MessageType.INIT
        and all(any(r is s for s in slots) for r in unpickler.refused)
    ):
        return BgpyError(unpickler.refused[0].message, True)
    if not is_message:
        return BgpyError(
            "Invalid message: not a bgpy Message with a dict of args.", True
        )
    if obj.type is MessageType.INIT:
        for key, value in zip(TASK_KEYS, slots):
            if isinstance(value, TaskRef):
                obj.args[key] = value.func
    return obj


def decode_frame(
    body: bytes,
    allow_modules: Union[TaskPolicy, Collection[str]] = (),
    authenticated: bool = False,
) -> Union[Message, BgpyError]:
    """A bgpy frame body (base64 of a pickle) to a L{Message}, or an error."""
    raw = unbase64(body)
    if isinstance(raw, BgpyError):
        return raw
    return loads_message(raw, allow_modules, authenticated)
