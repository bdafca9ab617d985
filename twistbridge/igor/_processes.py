"""
Igor's processes: code that runs beside the streams and sends to every
client or to one (L{ProcessOutput}), started and stopped with the service
(L{IgorService}).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistbridge.igor._core import (
    StreamClosedError,
    encode_action,
    encode_close,
    encode_error,
)

if TYPE_CHECKING:
    from twistbridge.igor._hub import Hub

__all__ = ["IgorService", "ProcessOutput", "build_services", "prepare_thread"]

log = Logger(namespace="twistbridge.igor")


class ProcessOutput:
    """
    The C{output} of an Igor process: messages to every client or to one.

    Safe to call from any thread.  After the service stopped, sends are
    dropped silently (a process thread may outlive the server briefly), and
    so are they while the hub's broker says another instance runs the
    process (a thread cannot be stopped: it is silenced).

    @ivar process_id: the process's id, the C{streamId} of its messages.
    @ivar closed: L{finish} was called; sending then raises.
    """

    def __init__(self, hub: Hub, process_id: Any) -> None:
        self._hub = hub
        self.process_id = process_id
        self.closed = False
        self.on_message_received: Callable[..., Any] = lambda *args: None

    def send(self, action: Any, data: Any = None, client_id: Any = None) -> None:
        """
        Send C{{"streamId": process_id, "action": action, "data": data}} to
        every client, or to C{client_id} only.

        @raise UnknownClientError: when C{client_id} is not connected.
        """
        if self.closed:
            raise StreamClosedError("Cannot write to closed output")
        if not self._hub.broker.holds(self.process_id):
            return
        self._hub.emit(encode_action(self.process_id, action, data), client_id)

    def send_error(self, error: Any, client_id: Any = None) -> None:
        """Send C{{"streamId": process_id, "error": str(error)}}."""
        if self.closed:
            raise StreamClosedError("Cannot write to closed output")
        if not self._hub.broker.holds(self.process_id):
            return
        self._hub.emit(encode_error(self.process_id, error), client_id)

    def finish(self) -> None:
        """Send C{{"streamId": process_id, "close": true}} to every client."""
        if self.closed:
            raise StreamClosedError("Output already closed")
        self.closed = True
        if self._hub.broker.holds(self.process_id):
            self._hub.emit(encode_close(self.process_id), None)


class IgorService(Service):
    """
    Starts the bridge's Igor processes with the service; L{drain} lets open
    streams finish, L{stopService} closes the WebSockets with 1001 (going
    away) once their streams finished (the production shutdown calls both,
    in that order, within C{shutdown_timeout}).

    Thread processes get C{process_id}, C{output}, C{scope} and C{sessions}
    before they start and run as daemon threads.  Callables are called with
    their output in the reactor; what they return is stopped with the
    service (C{.stop()}, e.g. a C{LoopingCall}, or a L{Deferred}, cancelled).

    The hub's broker says where each process runs: here at once (the
    in-process broker), or on the one instance holding its lease (a shared
    broker), which starts it when it takes the lease and stops it (a
    callable) or silences it (a thread) when it loses it.
    """

    name = "igor-processes"  # type: ignore[assignment]  # (Service declares None)

    def __init__(self, hub: Hub, processes: Dict[Any, Any]) -> None:
        self.hub = hub
        self.processes = processes
        self._started: Dict[Any, Any] = {}

    def startService(self) -> None:
        """Start the broker, and every process where it says."""
        Service.startService(self)
        self.hub.stopped = False
        self.hub.draining = False
        self.hub.start_broker()
        self.hub.broker.run_processes(
            list(self.processes), self._start_one, self._stop_one
        )

    def _start_one(self, process_id: Any) -> None:
        if not self.running or process_id in self._started:
            return
        obj = self.processes[process_id]
        output = self.hub.output(process_id)
        if isinstance(obj, threading.Thread):
            prepare_thread(obj, process_id, output, self.hub)
            if obj.ident is None:
                obj.start()
            return
        try:
            result = obj(output)
        except Exception:
            log.failure(
                "igor process {process_id} failed to start", process_id=process_id
            )
            return
        self._started[process_id] = result

    def _stop_one(self, process_id: Any) -> None:
        if process_id in self._started:
            _stop_result(self._started.pop(process_id))

    def drain(self) -> Deferred:
        """Take no new streams; fire once the open ones finished."""
        return self.hub.streams_done()

    def stopService(self) -> Deferred:
        """Stop callable processes, then close WebSockets once their streams end."""
        Service.stopService(self)
        self.hub.stopped = True
        started, self._started = self._started, {}
        for result in started.values():
            _stop_result(result)
        d = self.hub.close_all()
        d.addBoth(lambda r: self.hub.broker.stop())
        return d


def _stop_result(result: Any) -> None:
    """Stop what a callable process returned (C{.stop()}, or cancel a Deferred)."""
    try:
        if isinstance(result, Deferred):
            result.cancel()
        elif callable(getattr(result, "stop", None)) and getattr(
            result, "running", True
        ):
            result.stop()
    except Exception:
        log.failure("igor: stopping a process failed")


def prepare_thread(
    thread: threading.Thread, process_id: Any, output: Any, hub: Hub
) -> None:
    """Set a process thread's attributes (as Igor does) and make it a daemon."""
    thread.process_id = process_id  # type: ignore[attr-defined]
    thread.output = output  # type: ignore[attr-defined]
    thread.scope = hub.scope  # type: ignore[attr-defined]
    thread.sessions = hub.sessions  # type: ignore[attr-defined]
    if thread.ident is None:
        thread.daemon = True


def build_services(hub: Hub, processes: Dict[str, Any]) -> List[Any]:
    """The service that starts Igor processes and drains WebSockets on stop
    (here, not beside the WebSocket protocol: a bridge without Igor
    listeners needs it without importing autobahn)."""
    return [IgorService(hub, processes)]
