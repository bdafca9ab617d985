"""
Igor's own API on twistbridge: C{IgorServer(api, config)}, C{CONFIG},
C{add_process}, C{run_forever} and C{IgorProcess}, so that an Igor program
runs after changing its import::

    from twistbridge.igor import IgorServer, IgorProcess, flatten, CONFIG
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, cast

from twistbridge.igor._core import (
    SESSION_TIMEOUT,
)
from twistbridge.igor._core import (
    StreamClosedError as StreamClosedError,
)
from twistbridge.igor._core import (
    UnknownClientError as UnknownClientError,
)
from twistbridge.igor._core import (
    flatten as flatten,
)
from twistbridge.igor._objects import (
    ProcessOutput as ProcessOutput,
)
from twistbridge.igor._objects import (
    Stream as Stream,
)
from twistbridge.igor._objects import (
    handler_wrapper as handler_wrapper,
)

if TYPE_CHECKING:
    from twistbridge.service import BridgeService

__all__ = [
    "CONFIG",
    "IgorProcess",
    "IgorServer",
    "WebSocketServer",
]

#: Igor's default configuration.  C{IgorServer(api)} without a config reads
#: this dict when it is called, so a program may change it first, as with
#: Igor.  C{port} and C{host} are the WebSocket's; C{file_server_config}
#: (C{enable}, C{port}, C{root_directory}, and here also C{host}) the file
#: server's; C{logging} is accepted (Twisted's log goes to stdout).
CONFIG: Dict[str, Any] = {
    "port": 5678,
    "host": "localhost",
    "file_server": False,
    "file_server_config": {
        "enable": False,
        "port": 8080,
        "root_directory": None,
    },
    "logging": {"level": logging.ERROR, "file_name": "igor_error.log"},
}

#: The name the one-line start-up errors begin with.
PROGRAM = "igor server"


class IgorProcess(threading.Thread):
    """
    Base class for Igor processes (threads).  The server sets C{process_id},
    C{output}, C{scope} and C{sessions} before starting it, as a daemon
    thread.
    """

    scope: Any = None
    process_id: Any = None
    output: Any = None
    sessions: Any = None

    def __init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)


def _interface(host: str) -> str:
    return "127.0.0.1" if host in ("localhost", "") else host


def _description(host: str, port: int) -> str:
    from twistbridge.endpoints import endpoint_description

    return endpoint_description((_interface(host), port))


def _merged(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Igor's defaults overlaid with C{config} (nested dicts merged too)."""
    merged = dict(CONFIG)
    for key, value in (config or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class WebSocketServer:
    """
    What Igor's C{server.server} was (a C{websocket_server.WebsocketServer}):
    C{send_message(client, text)}, C{send_message_to_all(text)},
    C{run_forever()} and C{shutdown()}, on twistbridge's connections.
    Safe to call from any thread.
    """

    def __init__(self, igor: IgorServer) -> None:
        self._igor = igor

    def _connection(self, client: Any) -> Any:
        if callable(getattr(client, "write", None)):
            return client
        if isinstance(client, dict):
            return self._igor._hub.client(client["id"])
        return self._igor._hub.client(getattr(client, "client_id", client))

    def send_message(self, client: Any, message: str) -> None:
        """Send one text message to C{client} (a connection, a client id or Igor's client dict)."""
        self._igor._hub.deliver(self._connection(client), message.encode("utf-8"))

    def send_message_to_all(self, message: str) -> None:
        """Send one text message to every connected client."""
        self._igor._hub.emit(message.encode("utf-8"))

    def run_forever(self) -> None:
        """Bind, then run the reactor until the server stops."""
        self._igor._serve()

    def shutdown(self) -> None:
        """Stop the server gracefully (from any thread)."""
        from twisted.internet import reactor

        # The stubs type the global reactor without IReactorFromThreads.
        reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]


class IgorServer:
    """
    A standalone Igor WebSocket server (C{ws://host:port/}), built on a
    L{twistbridge.Bridge} that serves nothing else, plus Igor's file server
    when C{file_server_config["enable"]} is true.

    @param api: action name to handler (a nested dict is flattened with
        C{"."}).
    @param config: Igor's config dict, over L{CONFIG}; C{port} (5678) and
        C{host} (C{"localhost"}, i.e. 127.0.0.1), C{file_server_config},
        and C{allowed_origins} (browser origins allowed besides the
        defaults) are used.
    @ivar bridge: the underlying L{twistbridge.Bridge}.
    @ivar paths: the actions served (the flattened C{api}).
    @ivar processes: process id to C{{"thread": ..., "output": ...}}, as in
        Igor.
    @ivar server: the L{WebSocketServer} (Igor's C{websocket_server} object).
    @ivar session_delete_timeout: seconds a session outlives its client
        (Igor's attribute; change it before C{run_forever}).
    @ivar logger: the standard-library logger named after this module.
    @ivar file_server_threat: Igor's (sic) name for the file server; here its
        listener service (with Igor's C{kill()}), or L{None}.
    """

    def __init__(
        self,
        api: Optional[Dict[str, Any]] = None,
        config: Optional[Dict[str, Any]] = None,
    ):
        from twistbridge.app import Bridge

        if not isinstance(api, dict):
            raise TypeError("API config object must be dictionary object")
        self.config = _merged(config)
        self.paths = flatten(api)
        self.port = int(self.config["port"])
        self.host = str(self.config["host"])
        origins = tuple(self.config.get("allowed_origins") or ())
        self.bridge = Bridge(
            port="none",
            bgpy_port="none",
            igor_port=_description(self.host, self.port),
            igor_allowed_origin=origins,
        )
        for name, handler in self.paths.items():
            self.bridge.igor_action(name, handler)
        self._hub = self.bridge.runtime().igor_hub
        self.server = WebSocketServer(self)
        self.processes: Dict[Any, Dict[str, Any]] = {}
        self.session_delete_timeout = SESSION_TIMEOUT
        self.logger = logging.getLogger(__name__)
        self.file_server_threat: Any = None
        self._file_server = self._file_server_plan()
        self._service: Any = None

    def _file_server_plan(self) -> Optional[Dict[str, Any]]:
        fs = self.config.get("file_server_config") or {}
        if not (fs.get("enable") or self.config.get("file_server")):
            return None
        root = fs.get("root_directory")
        if not root:
            raise ValueError(
                "file_server_config needs a root_directory: the file server "
                "serves one directory, never the whole file system"
            )
        return {
            "root": str(root),
            "port": int(fs.get("port", 8080)),
            "host": str(fs.get("host", self.host)),
        }

    @property
    def scope(self) -> Any:
        """The object shared by every handler and process (a dict)."""
        return self._hub.scope

    @scope.setter
    def scope(self, value: Any) -> None:
        self._hub.scope = value

    @property
    def sessions(self) -> Dict[Any, Dict[str, Any]]:
        """Client id to session dict."""
        return self._hub.sessions

    @property
    def clients(self) -> Dict[Any, Any]:
        """Connected client id to its connection."""
        return self._hub.clients

    @property
    def streams(self) -> Dict[Any, Any]:
        """The open streams, stream id to stream (of every client)."""
        return {
            stream_id: stream
            for conn in list(self._hub.connections)
            for stream_id, stream in list(getattr(conn, "streams", {}).items())
        }

    @property
    def timeouts(self) -> Dict[Any, Any]:
        """Client id to the pending deletion of its session (a C{DelayedCall})."""
        return dict(self._hub._expiry)

    def add_process(self, process_id: Any, thread: Any) -> None:
        """
        Add a process (a thread, or a callable receiving its output); it
        starts with C{run_forever}.  A thread's C{process_id}, C{output},
        C{scope} and C{sessions} are set now, as Igor does.
        """
        from twistbridge.igor._hub import prepare_thread

        output = self._hub.output(process_id)
        if isinstance(thread, threading.Thread):
            prepare_thread(thread, process_id, output, self._hub)
        self.processes[process_id] = {"thread": thread, "output": output}
        self.bridge.igor_process(process_id, thread)

    def service(self) -> Any:
        """
        The L{twisted.application.service.IService} of this server (for
        embedding in an application).
        """
        if self._service is not None:
            return self._service
        self._hub.session_timeout = self.session_delete_timeout
        service = cast("BridgeService", self.bridge.service())
        plan = self._file_server
        if plan is not None:
            from twistbridge.igor._fileserver import build_file_site
            from twistbridge.limits import HTTP_REFUSAL
            from twistbridge.listeners import build_listener

            s = self.bridge.settings
            site = build_file_site(
                plan["root"],
                _interface(plan["host"]),
                allowed_origins=s.igor_allowed_origin,
                allowed_hosts=s.allowed_host,
                timeout=s.idle_timeout,
            )
            listener = build_listener(
                "igor-files",
                _description(plan["host"], plan["port"]),
                site,
                s,
                HTTP_REFUSAL,
            )
            # Igor's name, on this listener only.
            listener.kill = listener.stopService  # type: ignore[attr-defined]
            listener.setServiceParent(service)
            service.listeners["igor-files"] = listener
            self.file_server_threat = listener
        self._service = service
        return service

    def _address(self, listener: str) -> str:
        if listener == "igor-files" and self._file_server is not None:
            return f"{self._file_server['host']}:{self._file_server['port']}"
        return f"{self.host}:{self.port}"

    def run_forever(self) -> None:
        """
        Start the process threads, then serve (Igor's order): log to stdout,
        run the reactor until SIGINT/SIGTERM or a handler's C{SystemExit},
        and return after a graceful shutdown.  When a port cannot be bound,
        print one line saying which and why, and exit with status 1.
        """
        for entry in self.processes.values():
            thread = entry["thread"]
            if isinstance(thread, threading.Thread) and thread.ident is None:
                thread.daemon = True
                thread.start()
        self.server.run_forever()

    def _serve(self) -> None:
        from twisted.logger import textFileLogObserver

        from twistbridge._compatrun import run_standalone

        run_standalone(
            PROGRAM,
            self._address,
            self.service(),
            observers=[textFileLogObserver(sys.stdout)],
        )
