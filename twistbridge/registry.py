"""
The registry: what a twistbridge program registers for the four protocols,
and its settings.  Data only: serving it is L{twistbridge.app.Bridge}'s
business (through L{twistbridge.runtime.Runtime}), so this module imports no
Twisted and every layer may read a registry::

    registry = Registry()

    @registry.rpc_function
    def add(a, b): ...
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from twistbridge._signatures import (
    RegistrationError,
    check_bgpy_task,
    check_igor_action,
    check_izzati_callback,
)
from twistbridge.bgpy._registry import BgpyTasks
from twistbridge.config import Settings, parse_size
from twistbridge.handlers import Handler, check_picklable, resolve
from twistbridge.igor._core import flatten
from twistbridge.izzati._registry import IzzatiRegistration
from twistbridge.jsonrpc._dispatch import PathOptions
from twistbridge.jsonrpc._registry import RpcMethod, normalize_path, rpc_entries

__all__ = [
    "BgpyTasks",
    "IzzatiRegistration",
    "Registry",
    "RegistrationError",
    "RpcMethod",
    "normalize_path",
    "rpc_entries",
]


class Registry:
    """
    What a program registers for the four protocols, and its settings.

    Keyword arguments are the settings (L{Settings}).  Every registration
    checks the handler against the way its protocol calls it and raises
    L{RegistrationError} (naming the function, what it must accept and an
    example) for one that cannot be called so.  Registering a second handler
    under a name already taken (or a second izzati callback, or a second set
    of bgpy tasks) is a L{RegistrationError} too, unless C{replace=True} is
    passed.  Handlers with C{run_in="process"} are checked to pickle by
    L{check}, which serving the registry runs first.

    @ivar settings: the L{Settings} in force.
    @ivar given_settings: the names of the settings given explicitly, as
        keywords or through L{configure}.
    @ivar izzati_registration: the izzati callback, if any.
    @ivar igor_handlers: Igor action name to L{Handler}.
    @ivar igor_process_objects: Igor process id to thread or callable.
    @ivar rpc_methods: every registered JSON-RPC method.
    @ivar rpc_options: JSON-RPC path to its options.
    @ivar rpc_version: incremented on every JSON-RPC registration change.
    @ivar bgpy: the bgpy tasks.
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.given_settings = frozenset(settings)
        self.izzati_registration: Optional[IzzatiRegistration] = None
        self.igor_handlers: Dict[str, Handler] = {}
        self.igor_process_objects: Dict[str, Any] = {}
        self.rpc_methods: List[RpcMethod] = []
        self.rpc_options: Dict[str, Dict[str, Any]] = {}
        self.rpc_version = 0
        self.bgpy: BgpyTasks = BgpyTasks()

    def configure(self, **settings: Any) -> None:
        """Change settings (before C{service()} or C{resource()} is called)."""
        self.settings = self.settings.updated(**settings)
        self.given_settings = self.given_settings | frozenset(settings)

    def serves_igor(self) -> bool:
        """Whether the app registers an Igor action or process."""
        return bool(self.igor_handlers or self.igor_process_objects)

    def serves_bgpy(self) -> bool:
        """Whether the app (or its settings) gives bgpy clients anything to run."""
        s = self.settings
        return bool(
            self.bgpy.init_task
            or self.bgpy.allow_modules
            or s.bgpy_init_file
            or s.bgpy_allow_module
            or s.bgpy_token
            or s.bgpy_token_file
        )

    # izzati ---------------------------------------------------------------

    def izzati(
        self,
        callback: Optional[Callable[..., Any]] = None,
        *,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        run_in: Optional[str] = None,
        max_upload_size: Any = None,
        replace: bool = False,
    ) -> Any:
        """
        Register the izzati callback C{callback(text, data, *args, **kwargs)},
        served at C{POST /}.  Usable as C{@bridge.izzati} or
        C{@bridge.izzati(run_in=..., max_upload_size=...)}.

        @param replace: replace the callback already registered (without
            it, a second callback is a L{RegistrationError}).
        """

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            check_izzati_callback(func, args, kwargs)
            old = self.izzati_registration
            if old is not None and not replace:
                raise RegistrationError(
                    f"{_name(func)} cannot be the izzati callback: "
                    f"{_name(old.handler.func)} already is; pass replace=True to "
                    "replace it"
                )
            self.izzati_registration = IzzatiRegistration(
                handler=resolve(func, run_in),
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                max_upload_size=None
                if max_upload_size is None
                else parse_size(max_upload_size),
            )
            return func

        return register if callback is None else register(callback)

    # Igor -----------------------------------------------------------------

    def igor_action(
        self,
        name: Any = None,
        handler: Optional[Callable[..., Any]] = None,
        *,
        run_in: Optional[str] = None,
        replace: bool = False,
    ) -> Any:
        """
        Register C{handler(out, data, **kwargs)} for the WebSocket action
        C{name}.  Usable as a decorator: C{@bridge.igor_action("echo")}; a
        bare C{@bridge.igor_action} registers the function under its own
        name.

        @param replace: replace the handler already registered for C{name}
            (without it, that is a L{RegistrationError}).
        """
        if callable(name) and handler is None:
            # A bare @bridge.igor_action (or igor_action(func)): its name.
            name, handler = _name(name), name
        if not isinstance(name, str) or not name:
            raise RegistrationError(
                f"igor_action needs an action name (a non-empty string), not "
                f'{name!r}: use @bridge.igor_action("name") or a bare '
                "@bridge.igor_action"
            )
        action = name

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            check_igor_action(func)
            old = self.igor_handlers.get(action)
            if old is not None and not replace:
                raise RegistrationError(
                    f"{_name(func)} cannot be the Igor action {action!r}: "
                    f"{_name(old.func)} already is; pass replace=True to replace it"
                )
            self.igor_handlers[action] = resolve(func, run_in, action)
            return func

        return register if handler is None else register(handler)

    def igor_actions(
        self,
        api: Dict[str, Any],
        *,
        separator: str = ".",
        run_in: Optional[str] = None,
        replace: bool = False,
    ) -> None:
        """Register a (nested) dict of actions, flattened with C{separator}."""
        for name, func in flatten(api, separator).items():
            self.igor_action(name, func, run_in=run_in, replace=replace)

    def igor_process(self, process_id: str, obj: Any, *, replace: bool = False) -> None:
        """
        Register a process: a L{threading.Thread} instance or a callable
        receiving the output; it starts with the service.

        @param replace: replace the process already registered under
            C{process_id} (without it, that is a L{RegistrationError}).
        """
        if process_id in self.igor_process_objects and not replace:
            raise RegistrationError(
                f"an Igor process {process_id!r} is already registered; pass "
                "replace=True to replace it"
            )
        self.igor_process_objects[process_id] = obj

    # JSON-RPC -------------------------------------------------------------

    def rpc_function(
        self,
        func: Optional[Callable[..., Any]] = None,
        *,
        path: str = "/rpc",
        name: Optional[str] = None,
        run_in: Optional[str] = None,
        jsonp: Optional[bool] = None,
        replace: bool = False,
    ) -> Any:
        """
        Register a JSON-RPC method at C{path} (default C{/rpc}), named
        C{name} or the function's name, plus its C{_alias} names.
        Usable as C{@bridge.rpc_function} or C{@bridge.rpc_function(...)}.
        C{jsonp} switches the JSONP fallback for this method alone (L{None}:
        the path's C{jsonp} option).

        @param replace: replace methods of the same names at C{path}
            (without it, a name already taken is a L{RegistrationError}).
        """

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            entries = rpc_entries(f, path, name, run_in, jsonp)
            taken = {(m.path, m.name): m for m in self.rpc_methods}
            names = {(m.path, m.name) for m in entries}
            for key in sorted(names & set(taken)):
                if not replace:
                    raise RegistrationError(
                        f"{_name(f)} cannot be the JSON-RPC method {key[1]!r} at "
                        f"{key[0]}: {_name(taken[key].handler.func)} already is; "
                        "pass replace=True to replace it"
                    )
            self.rpc_methods = [
                m for m in self.rpc_methods if (m.path, m.name) not in names
            ]
            self.rpc_methods.extend(entries)
            self.rpc_version += 1
            return f

        return register if func is None else register(func)

    def rpc_instance(
        self,
        obj: Any,
        *,
        path: str = "/rpc",
        run_in: Optional[str] = None,
        jsonp: Optional[bool] = None,
        replace: bool = False,
    ) -> None:
        """Register every public method of C{obj} at C{path}."""
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            member = getattr(obj, attr)
            if callable(member):
                self.rpc_function(
                    member,
                    path=path,
                    name=attr,
                    run_in=run_in,
                    jsonp=jsonp,
                    replace=replace,
                )

    def rpc_path(self, path: str = "/rpc", **options: Any) -> None:
        """
        Configure the JSON-RPC dispatcher at C{path}: C{cors}, C{jsonp},
        C{auth}, C{blocking}, C{compress_min_size}, C{magic_var},
        C{max_batch_size}, C{allow_form_content} (see the JSON-RPC
        documentation).

        @raise ValueError: for an unknown option or a bad value.
        """
        merged = {**self.rpc_options.get(normalize_path(path), {}), **options}
        PathOptions.from_dict(merged)
        self.rpc_options[normalize_path(path)] = merged
        self.rpc_version += 1

    # bgpy -----------------------------------------------------------------

    def bgpy_tasks(
        self,
        init_task: Callable[..., Any],
        exec_task: Callable[..., Any],
        exit_task: Callable[..., Any],
        *,
        allow_modules: Sequence[str] = (),
        replace: bool = False,
    ) -> None:
        """
        Set the bgpy tasks; C{init_task} runs when the service starts.
        C{allow_modules} names modules whose task functions bgpy clients may
        send in their INIT.

        @param replace: replace tasks already set (without it, a second
            call is a L{RegistrationError}).
        """
        check_bgpy_task("init_task", init_task)
        check_bgpy_task("exec_task", exec_task)
        check_bgpy_task("exit_task", exit_task)
        if self.bgpy.init_task is not None and not replace:
            raise RegistrationError(
                f"bgpy tasks are already set (init_task "
                f"{_name(self.bgpy.init_task)}); pass replace=True to replace them"
            )
        self.bgpy = BgpyTasks(init_task, exec_task, exit_task, tuple(allow_modules))

    # assembly -------------------------------------------------------------

    def check(self) -> None:
        """
        Check that every C{run_in="process"} handler can be sent to a worker
        process (it must be importable by its name at the top level of a
        module).  Run when the registry is served (C{service()},
        C{resource()}, C{twistd bridge}), before anything starts:
        registration cannot check it, since a decorator runs before the name
        it decorates is bound.

        @raise twistbridge.handlers.NotPicklable: for the first that cannot,
            in one line saying why.
        """
        registration = self.izzati_registration
        if registration is not None:
            check_picklable(
                registration.handler,
                f"{_name(registration.handler.func)} (the izzati callback)",
            )
        for action, handler in self.igor_handlers.items():
            check_picklable(handler, f"{_name(handler.func)} (Igor action {action!r})")
        for method in self.rpc_methods:
            check_picklable(
                method.handler,
                f"{_name(method.handler.func)} (JSON-RPC method {method.name!r} "
                f"at {method.path})",
            )


def _name(func: Any) -> str:
    """A callable's name for messages."""
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__
