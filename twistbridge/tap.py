"""
C{twistd bridge}: the command-line options (L{Options}) and L{makeService}.

Every option is a setting of L{twistbridge.config.Settings}; an option given on
the command line overrides the value the app's L{Bridge} was built with.
Wrong input ends with one line on stderr and a non-zero exit, not a traceback.

(Over 400 lines: every option of C{twistd bridge}, each with its one-line
check, and the choice of the service to run: the bridge, the C{--reload}
supervisor or the C{--workers} supervisor.)
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from typing import Any, Dict, List

from twisted.python import usage

from twistbridge.config import SIZE_SETTINGS, Settings, parse_size
from twistbridge.endpoints import listen_description

DEMO_APP = "twistbridge.demo:bridge"


def _fail(message: str) -> SystemExit:
    return SystemExit(f"twistd bridge: error: {message}")


class Options(usage.Options):
    """The options of C{twistd bridge}: the listeners, the app and every setting."""

    synopsis = "[options]"
    longdesc = (
        "Serve izzati uploads, Igor WebSocket streams, JSON-RPC 2.0 and bgpy "
        "tasks from one reactor. Listeners take a port number (bound to "
        "127.0.0.1), a Twisted endpoint description, or 'none'."
    )

    optParameters: List[List[Any]] = [
        ["port", "p", None, "HTTP listener [default: 5020]"],
        ["igor-port", None, None, "Igor WebSocket listener or 'none' [default: 5678]"],
        ["bgpy-port", None, None, "bgpy task listener or 'none' [default: 54321]"],
        [
            "metrics-port",
            None,
            None,
            "listener serving Prometheus GET /metrics [default: none]",
        ],
        ["app", None, None, "the app's Bridge as module:attribute [default: demo app]"],
        [
            "max-upload-size",
            None,
            None,
            "izzati body limit, bytes or K/M/G [default: 1G]",
        ],
        ["max-request-size", None, None, "JSON-RPC body limit [default: 16M]"],
        [
            "max-message-size",
            None,
            None,
            "Igor message and bgpy frame limit [default: 16M]",
        ],
        [
            "header-timeout",
            None,
            None,
            "seconds to send HTTP headers [default: 10]",
            float,
        ],
        [
            "idle-timeout",
            None,
            None,
            "seconds an HTTP connection may idle [default: 60]",
            float,
        ],
        ["bgpy-init-file", None, None, "Python file with bgpy tasks"],
        [
            "bgpy-token-file",
            None,
            None,
            "file holding the bgpy token [default: $BGPY_TOKEN]",
        ],
        ["threads", None, None, "handler thread pool size [default: 10]", int],
        ["processes", None, None, "process pool size [default: number of cores]", int],
        [
            "call-timeout",
            None,
            None,
            "seconds a process-pool call may run, 0 for no limit [default: 300]",
            float,
        ],
        [
            "max-connections",
            None,
            None,
            "open connections per listener, 0 for no limit [default: 4096]",
            int,
        ],
        [
            "max-connections-per-client",
            None,
            None,
            "open connections per listener from one address [default: 512]",
            int,
        ],
        [
            "message-timeout",
            None,
            None,
            "seconds for a WebSocket handshake or bgpy message to complete [default: 30]",
            float,
        ],
        [
            "shutdown-timeout",
            None,
            None,
            "seconds to drain on SIGTERM [default: 10]",
            float,
        ],
        ["log-format", None, None, "'text' or 'json' [default: text]"],
        [
            "max-upload-disk",
            None,
            None,
            "temp disk all in-flight uploads may hold [default: 4G]",
        ],
        [
            "min-body-rate",
            None,
            None,
            "bytes/s a request body must keep up, 0 for none [default: 1K]",
        ],
        [
            "max-queued",
            None,
            None,
            "calls waiting per offload pool before 'server busy', 0 for no limit [default: 1000]",
            int,
        ],
        [
            "igor-takeover",
            None,
            None,
            "'name' (Igor's takeover by client id) or 'token' (resume token only) [default: name]",
        ],
        [
            "broker",
            None,
            None,
            "share Igor clients with other instances: redis://host:port/db, "
            "rediss://... or unix:///path?db=N [default: none, this process only]",
        ],
        [
            "workers",
            None,
            None,
            "reactor processes sharing the listeners; more than 1 needs "
            "--broker [default: 1]",
            int,
        ],
    ]

    optFlags: List[List[Any]] = [
        ["reload", None, "development: restart when the app's files change"],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self._flags = {flag[0] for flag in self.optFlags}
        self["igor-allowed-origin"] = []
        self["bgpy-allow-module"] = []
        self["allowed-host"] = []

    def opt_igor_allowed_origin(self, origin: str) -> None:
        """An extra allowed WebSocket Origin (repeatable)."""
        self["igor-allowed-origin"].append(origin)

    def opt_bgpy_allow_module(self, module: str) -> None:
        """A module whose task functions bgpy clients may name (repeatable)."""
        self["bgpy-allow-module"].append(module)

    def opt_allowed_host(self, host: str) -> None:
        """An extra allowed HTTP Host name (repeatable)."""
        self["allowed-host"].append(host)

    def settings_given(self) -> Dict[str, Any]:
        """The settings given on the command line, by their L{Settings} name."""
        given: Dict[str, Any] = {}
        names = set(Settings.names())
        for key, value in self.items():
            name = key.replace("-", "_")
            if key in self._flags and not value:
                continue  # a flag left out is not a setting given
            if name in names and value not in (None, []):
                given[name] = value
        return given

    def postOptions(self) -> None:
        """Validate everything now, so mistakes never reach a traceback."""
        given = self.settings_given()
        for name in SIZE_SETTINGS:
            if name in given:
                try:
                    parse_size(given[name])
                except ValueError as e:
                    raise _fail(f"--{name.replace('_', '-')}: {e}") from None
        if given.get("broker") not in (None, "none"):
            from twistbridge.igor._redis import redis_client_available

            if not redis_client_available():
                raise _fail(
                    "--broker needs the Redis client txredisapi: "
                    "pip install 'twistbridge[redis]'"
                )
        if self["reload"]:
            # The supervisor never imports the app: its child does.
            try:
                self.reload_settings = Settings(**given)
            except (TypeError, ValueError) as e:
                raise _fail(str(e)) from None
            _refuse_workers(self.reload_settings, reload=True)
            return
        self.bridge = load_app(self["app"] or DEMO_APP)
        try:
            self.bridge.configure(**given)
        except (TypeError, ValueError) as e:
            raise _fail(str(e)) from None
        try:
            self.bridge.check()
        except TypeError as e:  # NotPicklable
            raise _fail(f"--app {self['app'] or DEMO_APP}: {e}") from None
        from twistbridge.reload import RELOAD_CHILD_ENV, apply_implicit_listeners

        apply_implicit_listeners(self.bridge, dict(os.environ))
        if self.bridge.settings.reload and not os.environ.get(RELOAD_CHILD_ENV):
            # Bridge(reload=True): this process becomes the supervisor.
            self["reload"] = True
            self.reload_settings = self.bridge.settings
            _refuse_workers(self.reload_settings, reload=True)
            return
        _refuse_workers(self.bridge.settings)
        from twistbridge.listeners import unused_listener

        s = self.bridge.settings
        if s.bgpy_token_file:
            try:
                s.token()
            except OSError as e:
                raise _fail(f"--bgpy-token-file {s.bgpy_token_file}: {e}") from None
        for name, option, value in (
            ("http", "--port", s.port),
            ("igor", "--igor-port", s.igor_port),
            ("bgpy", "--bgpy-port", s.bgpy_port),
            ("metrics", "--metrics-port", s.metrics_port),
        ):
            if not unused_listener(self.bridge, name):
                check_listen(option, value)

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse, turning a usage mistake into one line that says what to do,
        instead of the whole help text.
        """
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            raise _fail(f"{e} (see: twistd bridge --help)") from None


def _refuse_workers(settings: Any, reload: bool = False) -> None:
    from twistbridge.workers import startup_refusal

    reason = startup_refusal(settings, reload)
    if reason:
        raise _fail(reason)


def load_app(spec: str) -> Any:
    """
    Import C{module:attribute} and return it, checking it is a L{Bridge}.

    @raise SystemExit: with a one-line reason when it cannot be had.
    """
    from twistbridge.app import Bridge

    module_name, sep, attribute = spec.partition(":")
    if module_name.endswith(".py"):
        dotted = module_name[:-3].replace("/", ".").replace("\\", ".")
        raise _fail(
            f"--app {spec}: name the module, not its file: "
            f"--app {dotted}:{attribute or 'bridge'}"
        )
    if not sep or not module_name or not attribute:
        raise _fail(
            f"--app must be module:attribute (the module, then the name of its "
            f"Bridge), e.g. --app {module_name or 'myapp'}:bridge; got {spec!r}"
        )
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, find the user's module in cwd
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name == module_name.split(".")[0]:
            raise _fail(
                f"--app {spec}: no module {module_name!r} in the current directory "
                f"({os.getcwd()}) or on the Python path; run twistd from the "
                f"directory that holds it, or add that directory to PYTHONPATH"
            ) from None
        raise _fail(
            f"--app {spec}: cannot import module {module_name!r}: {e}"
        ) from None
    except Exception as e:
        raise _fail(
            f"--app {spec}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from None
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise _fail(
            f"--app {spec}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not isinstance(obj, Bridge):
        raise _fail(
            f"--app {spec}: {attribute!r} is a {type(obj).__name__}, not a twistbridge.Bridge"
        )
    return obj


def check_listen(option: str, value: Any) -> None:
    """
    Fail early, with one line, on a description that does not parse or a TCP
    port that is already taken.
    """
    from twisted.internet import reactor
    from twisted.internet.abstract import isIPv6Address
    from twisted.internet.endpoints import serverFromString

    from twistbridge._internals import tcp_endpoint_address

    try:
        description = listen_description(value)
    except ValueError as e:
        raise _fail(f"{option} {value}: {e}") from None
    if description is None:
        return
    try:
        endpoint = serverFromString(reactor, description)
    except (IndexError, KeyError) as e:
        if description.startswith("systemd:"):
            raise _fail(
                f"{option} {value}: systemd passed no such socket ({type(e).__name__}: {e}); "
                "start the service through its .socket unit (LISTEN_FDS and "
                "LISTEN_FDNAMES must name the sockets)"
            ) from None
        raise _fail(f"{option} {value}: not an endpoint description ({e})") from None
    except Exception as e:
        raise _fail(f"{option} {value}: not an endpoint description ({e})") from None
    address = tcp_endpoint_address(endpoint)
    if address is not None:
        interface, port = address
        if not 0 <= port <= 65535:
            raise _fail(
                f"{option} {value}: a port number is 0-65535 (0: any free port)"
            )
        if port == 0:
            return
        family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((interface, port))
        except OSError as e:
            reason = (
                "is already in use"
                if e.errno == 98
                else f"cannot be bound ({e.strerror})"
            )
            way_out = f"choose another with {option} PORT"
            if option != "--port":
                way_out += f", or switch it off with {option} none"
            raise _fail(
                f"{option}: port {port} on {interface or '*'} {reason}; "
                f"{way_out} (with make run: make run ARGS='{option} ...')"
            ) from None
        finally:
            probe.close()


def makeService(options: Options) -> Any:
    """Build the service of the app named by C{--app} (or the demo app)."""
    from twistbridge.logs import configure_logging

    if options["reload"]:
        return _reload_service(options)
    # twistd's own options are the parent of ours (absent when embedded).
    twistd_options = getattr(options, "parent", None)
    from twistbridge.workers import WorkersError, supervises, workers_service

    if supervises(options.bridge.settings):
        try:
            return workers_service(options.bridge, sys.argv, twistd_options)
        except WorkersError as e:
            raise _fail(str(e)) from None
    service = options.bridge.service()
    if twistd_options is not None:
        service.owns_process = True
    configure_logging(options.bridge.settings, service, twistd_options)
    return service


def _reload_service(options: Options) -> Any:
    """The development supervisor of C{--reload} (see L{twistbridge.reload})."""
    from twistbridge.reload import ReloadError, ReloadService, refuse_reason

    twistd_options = getattr(options, "parent", None)
    nodaemon = bool(twistd_options["nodaemon"]) if twistd_options is not None else True
    reason = refuse_reason(nodaemon, dict(os.environ))
    if reason:
        raise _fail(reason)
    explicit = [
        name
        for name, setting in (
            ("http", "port"),
            ("igor", "igor_port"),
            ("bgpy", "bgpy_port"),
        )
        if setting in options.settings_given()
    ]
    try:
        return ReloadService(
            options.reload_settings, options["app"], sys.argv, explicit
        )
    except ReloadError as e:
        raise _fail(str(e)) from None
