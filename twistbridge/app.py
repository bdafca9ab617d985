"""
The application object: one L{Bridge} holds what a program registers for the
four protocols, and builds the Twisted objects that serve them.

    bridge = Bridge()

    @bridge.izzati
    def upload(text, data): ...

    @bridge.rpc_function
    def add(a, b): ...

C{Bridge.service()} gives the L{MultiService} that C{twistd bridge} runs (or an
existing application adopts); C{Bridge.resource()} gives the HTTP root
resource for an existing L{Site}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twistbridge.config import Settings
from twistbridge.offload import Handler, Offloader, resolve


@dataclass
class IzzatiRegistration:
    """
    The izzati callback of a bridge.

    @ivar handler: the resolved callback.
    @ivar args: extra positional arguments passed after C{text, data}.
    @ivar kwargs: extra keyword arguments.
    @ivar max_upload_size: request body limit in bytes, or L{None} for the
        bridge's setting.
    @ivar queue_first: pass C{args[0]} before C{text, data} (izzati's
        C{background=True}).
    """

    handler: Handler
    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_upload_size: Optional[int] = None
    queue_first: bool = False


@dataclass
class RpcMethod:
    """
    One JSON-RPC method.

    @ivar path: the HTTP path of its dispatcher (C{"/rpc"}, C{"/api"}, ...).
    @ivar name: the method name clients call.
    @ivar handler: the resolved callable.
    """

    path: str
    name: str
    handler: Handler
    jsonp: Optional[bool] = None


@dataclass
class BgpyTasks:
    """
    The bgpy task functions of a bridge.

    @ivar init_task: C{init_task(client) -> dict}.
    @ivar exec_task: C{exec_task(client, state, exec_args) -> dict}.
    @ivar exit_task: C{exit_task(client, state, exit_args) -> None}.
    @ivar allow_modules: modules whose task functions bgpy clients may name.
    """

    init_task: Optional[Callable[..., Any]] = None
    exec_task: Optional[Callable[..., Any]] = None
    exit_task: Optional[Callable[..., Any]] = None
    allow_modules: Tuple[str, ...] = ()


def normalize_path(path: str) -> str:
    """C{"api/"} and C{"/api"} are the same dispatcher: C{"/api"}."""
    path = "/" + path.strip("/")
    return path


def rpc_entries(
    func: Callable[..., Any],
    path: str = "/rpc",
    name: Optional[str] = None,
    run_in: Optional[str] = None,
    jsonp: Optional[bool] = None,
) -> List[RpcMethod]:
    """The L{RpcMethod} entries of one function: its name and its C{_alias} names."""
    method_name = name or getattr(func, "__name__", None) or repr(func)
    handler = resolve(func, run_in, method_name)
    aliases = getattr(func, "_alias", None) or []
    if isinstance(aliases, str):
        aliases = [aliases]
    return [
        RpcMethod(normalize_path(path), n, handler, jsonp)
        for n in [method_name, *aliases]
    ]


class Bridge:
    """
    The application object of a twistbridge program (SPEC section 2).

    Keyword arguments are the settings of SPEC section 9 (L{Settings}); the
    twistd options given on a command line override them.

    @ivar settings: the L{Settings} in force.
    @ivar given_settings: the names of the settings given explicitly, as
        keywords or through L{configure}.
    @ivar offloader: the thread and process pools every handler goes through.
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
        self._offloader: Optional[Offloader] = None
        self._built: Dict[str, Any] = {}

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

    @property
    def offloader(self) -> Offloader:
        """The bridge's L{Offloader}, created on first use."""
        if self._offloader is None:
            s = self.settings
            self._offloader = Offloader(
                threads=s.threads,
                processes=s.processes,
                call_timeout=s.call_timeout,
                shutdown_timeout=s.shutdown_timeout,
            )
        return self._offloader

    # izzati ---------------------------------------------------------------

    def izzati(
        self,
        callback: Optional[Callable[..., Any]] = None,
        *,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        run_in: Optional[str] = None,
        max_upload_size: Any = None,
    ) -> Any:
        """
        Register the izzati callback C{callback(text, data, *args, **kwargs)},
        served at C{POST /}.  Usable as C{@bridge.izzati} or
        C{@bridge.izzati(run_in=..., max_upload_size=...)}.
        """
        from twistbridge.config import parse_size

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
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
        name: str,
        handler: Optional[Callable[..., Any]] = None,
        *,
        run_in: Optional[str] = None,
    ) -> Any:
        """
        Register C{handler(out, data, **kwargs)} for the WebSocket action
        C{name}.  Usable as a decorator: C{@bridge.igor_action("echo")}.
        """

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            self.igor_handlers[name] = resolve(func, run_in, name)
            return func

        return register if handler is None else register(handler)

    def igor_actions(
        self, api: Dict[str, Any], *, separator: str = ".", run_in: Optional[str] = None
    ) -> None:
        """Register a (nested) dict of actions, flattened with C{separator}."""
        from twistbridge.igor import flatten

        for name, func in flatten(api, separator).items():
            self.igor_action(name, func, run_in=run_in)

    def igor_process(self, process_id: str, obj: Any) -> None:
        """
        Register a process: a L{threading.Thread} instance or a callable
        receiving the output; it starts with the service.
        """
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
    ) -> Any:
        """
        Register a JSON-RPC method at C{path} (default C{/rpc}), named
        C{name} or the function's name, plus its C{_alias} names.
        Usable as C{@bridge.rpc_function} or C{@bridge.rpc_function(...)}.
        C{jsonp} switches the JSONP fallback for this method alone (L{None}:
        the path's C{jsonp} option).
        """

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.rpc_methods.extend(rpc_entries(f, path, name, run_in, jsonp))
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
    ) -> None:
        """Register every public method of C{obj} at C{path}."""
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            member = getattr(obj, attr)
            if callable(member):
                self.rpc_function(
                    member, path=path, name=attr, run_in=run_in, jsonp=jsonp
                )

    def rpc_path(self, path: str = "/rpc", **options: Any) -> None:
        """
        Configure the JSON-RPC dispatcher at C{path}: C{cors}, C{jsonp},
        C{auth}, C{blocking}, C{compress_min_size}, C{magic_var},
        C{max_batch_size}, C{allow_form_content} (see the JSON-RPC
        documentation).

        @raise ValueError: for an unknown option or a bad value.
        """
        from twistbridge.jsonrpc._core import PathOptions

        merged = {**self.rpc_options.get(normalize_path(path), {}), **options}
        PathOptions.from_dict(merged)
        self.rpc_options[normalize_path(path)] = merged
        self.rpc_version += 1

    @property
    def rpc(self) -> Any:
        """
        The JSON-RPC runtime of this bridge: C{lock}, C{unlock}, C{wait},
        C{stats}, C{reload}, C{callAsync} (see the JSON-RPC documentation).
        """
        from twistbridge.jsonrpc._resource import controller

        return controller(self)

    # bgpy -----------------------------------------------------------------

    def bgpy_tasks(
        self,
        init_task: Callable[..., Any],
        exec_task: Callable[..., Any],
        exit_task: Callable[..., Any],
        *,
        allow_modules: Sequence[str] = (),
    ) -> None:
        """
        Set the bgpy tasks; C{init_task} runs when the service starts.
        C{allow_modules} names modules whose task functions bgpy clients may
        send in their INIT.
        """
        self.bgpy = BgpyTasks(init_task, exec_task, exit_task, tuple(allow_modules))

    # assembly -------------------------------------------------------------

    def resource(self) -> Any:
        """
        The HTTP root resource: C{POST /} (izzati), C{/rpc} and every
        registered JSON-RPC path, C{/ws} (Igor), C{/health}.
        """
        if "resource" not in self._built:
            from twistbridge.web import build_root

            self._built["resource"] = build_root(self)
        return self._built["resource"]

    def service(self) -> Any:
        """The L{twisted.application.service.MultiService} serving everything."""
        if "service" not in self._built:
            from twistbridge.service import BridgeService

            self._built["service"] = BridgeService(self)
        return self._built["service"]
