"""
Igor's own API on twistbridge: C{IgorServer(api, config)},
C{add_process}, C{run_forever} and C{IgorProcess}, so that an Igor program
runs after changing its import::

    from twistbridge.igor import IgorServer, IgorProcess, flatten
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Dict, Optional

from twistbridge.igor._core import SESSION_TIMEOUT, flatten

#: Igor's configuration keys this server uses (others are accepted and ignored).
CONFIG: Dict[str, Any] = {"port": 5678, "host": "localhost"}


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
    return "127.0.0.1" if host == "localhost" else host


class IgorServer:
    """
    A standalone Igor WebSocket server (C{ws://host:port/}), built on a
    L{twistbridge.Bridge} that serves nothing else.

    @param api: action name to handler (a nested dict is flattened with
        C{"."}).
    @param config: Igor's config dict; C{port} (5678) and C{host}
        (C{"localhost"}, i.e. 127.0.0.1) are used.
    @ivar bridge: the underlying L{twistbridge.Bridge}.
    @ivar session_delete_timeout: seconds a session outlives its client
        (Igor's attribute; change it before C{run_forever}).
    """

    def __init__(
        self,
        api: Optional[Dict[str, Any]] = None,
        config: Optional[Dict[str, Any]] = None,
    ):
        from twistbridge.app import Bridge
        from twistbridge.igor._protocol import get_hub

        if not isinstance(api, dict):
            raise TypeError("API config object must be dictionary object")
        self.config = dict(CONFIG, **(config or {}))
        port = int(self.config["port"])
        host = _interface(str(self.config["host"]))
        if ":" in host:
            host = host.replace(":", r"\:")
        self.bridge = Bridge(
            port="none", bgpy_port="none", igor_port=f"tcp:{port}:interface={host}"
        )
        for name, handler in flatten(api).items():
            self.bridge.igor_action(name, handler)
        self._hub = get_hub(self.bridge)
        self.session_delete_timeout = SESSION_TIMEOUT

    @property
    def scope(self) -> Dict[str, Any]:
        """The dict shared by every handler and process."""
        return self._hub.scope

    @property
    def sessions(self) -> Dict[Any, Dict[str, Any]]:
        """Client id to session dict."""
        return self._hub.sessions

    @property
    def clients(self) -> Dict[Any, Any]:
        """Connected client id to its connection."""
        return self._hub.clients

    def add_process(self, process_id: Any, thread: Any) -> None:
        """
        Add a process (a thread, or a callable receiving its output); it
        starts with C{run_forever}.  A thread's C{process_id}, C{output},
        C{scope} and C{sessions} are set now, as Igor does.
        """
        from twistbridge.igor._hub import prepare_thread

        if isinstance(thread, threading.Thread):
            prepare_thread(thread, process_id, self._hub.output(process_id), self._hub)
        self.bridge.igor_process(process_id, thread)

    def service(self) -> Any:
        """The L{IService} of this server (for embedding in an application)."""
        self._hub.session_timeout = self.session_delete_timeout
        return self.bridge.service()

    def run_forever(self) -> None:
        """
        Log to stdout, run the reactor until SIGINT/SIGTERM or a handler's
        C{SystemExit}, and return after a graceful shutdown.
        """
        from twisted.internet import reactor
        from twisted.logger import globalLogBeginner, textFileLogObserver

        globalLogBeginner.beginLoggingTo(
            [textFileLogObserver(sys.stdout)], redirectStandardIO=False
        )
        service = self.service()
        reactor.callWhenRunning(service.startService)
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        reactor.run()
