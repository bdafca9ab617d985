"""
Igor's C{igor.core} objects: C{Stream}, C{ProcessOutput} and
C{handler_wrapper}, with Igor's constructors and messages.

Handlers running on twistbridge receive the hub's own stream and output
objects (L{twistbridge.igor._streams}, L{twistbridge.igor._processes}); those count as instances of the classes
here (C{isinstance(out, Stream)} holds), so code that checks types keeps
working.  The classes themselves write through an Igor-like server object:
anything with C{server.send_message(client, text)},
C{server.send_message_to_all(text)} and a C{clients} dict, such as
L{twistbridge.igor.IgorServer}.
"""

from __future__ import annotations

import abc
import json
import logging
from typing import Any, Callable, Optional

from twistbridge.igor import _processes, _streams
from twistbridge.igor._core import StreamClosedError, UnknownClientError

__all__ = ["ProcessOutput", "Stream", "handler_wrapper"]


class Stream(metaclass=abc.ABCMeta):  # noqa: B024 (virtual base of the hub's streams)
    """
    Igor's stream: the C{out} of one handler call on one client.

    @param igor_server: the server; its C{server.send_message(client, text)}
        writes.
    @param client: the client, as C{igor_server.server} knows it.
    @param stream_id: the client's stream id.
    @param on_close_callback: called with C{(igor_server, stream_id)} by
        L{close}.
    @ivar closed: L{close} was called; sending then raises
        L{StreamClosedError}.
    """

    def __init__(
        self,
        igor_server: Any,
        client: Any,
        stream_id: Any,
        on_close_callback: Optional[Callable[[Any, Any], Any]],
    ) -> None:
        self.client = client
        self._igor_server = igor_server
        self._on_close_callback = on_close_callback
        self.stream_id = stream_id
        self.closed = False

    def _write(self, message: Any) -> None:
        if self.closed:
            raise StreamClosedError("Cannot write to closed stream")
        self._igor_server.server.send_message(self.client, json.dumps(message))

    def send(self, data: Any = None) -> None:
        """Send C{{"streamId": id, "data": data}}."""
        self._write({"streamId": self.stream_id, "data": data})

    def send_error(self, error: Any) -> None:
        """Send C{{"streamId": id, "error": str(error)}}."""
        self._write({"streamId": self.stream_id, "error": str(error)})

    def close(self) -> None:
        """Send C{{"streamId": id, "close": true}} and call the close callback."""
        if self.closed:
            raise StreamClosedError("Stream already closed")
        self._write({"streamId": self.stream_id, "close": True})
        self.closed = True
        if self._on_close_callback is not None:
            self._on_close_callback(self._igor_server, self.stream_id)


class ProcessOutput(metaclass=abc.ABCMeta):  # noqa: B024
    """
    Igor's process output: messages from process C{process_id} to every
    client or to one.

    @param process_id: the process id, sent as the C{streamId}.
    @param igor_server: the server (its C{server} writes, its C{clients}
        dict finds a client by id).
    @param on_finish_callback: called with C{(igor_server, process_id)} by
        L{finish}.
    @ivar on_message_received: Igor's hook, kept for programs that set it.
    """

    def __init__(
        self,
        process_id: Any,
        igor_server: Any,
        on_finish_callback: Optional[Callable[[Any, Any], Any]],
    ) -> None:
        self._igor_server = igor_server
        self.process_id = process_id
        self.on_message_received: Callable[..., Any] = lambda *args: None
        self._on_finish_callback = on_finish_callback
        self.closed = False

    def _write(self, message: Any, client_id: Any = None) -> None:
        if self.closed:
            raise StreamClosedError("Cannot write to closed output")
        text = json.dumps(message)
        server = self._igor_server.server
        if client_id is None:
            server.send_message_to_all(text)
            return
        client = self._igor_server.clients.get(client_id)
        if client is None:
            raise UnknownClientError(client_id)
        server.send_message(client, text)

    def send(self, action: Any, data: Any = None, client_id: Any = None) -> None:
        """Send C{{"streamId": process_id, "action": action, "data": data}}."""
        message = {"streamId": self.process_id, "action": action, "data": data}
        self._write(message, client_id)

    def send_error(self, error: Any, client_id: Any = None) -> None:
        """Send C{{"streamId": process_id, "error": str(error)}}."""
        self._write({"streamId": self.process_id, "error": str(error)}, client_id)

    def finish(self) -> None:
        """Send C{{"streamId": process_id, "close": true}} to all, then close."""
        if self.closed:
            raise StreamClosedError("Output already closed")
        self._write({"streamId": self.process_id, "close": True})
        self.closed = True
        if self._on_finish_callback is not None:
            self._on_finish_callback(self._igor_server, self.process_id)


# The hub's objects are what handlers and processes really get.
Stream.register(_streams.Stream)
ProcessOutput.register(_processes.ProcessOutput)


async def handler_wrapper(
    handler_function: Callable[..., Any],
    stream: Any,
    data: Any,
    session: Any,
    scope: Any,
) -> None:
    """
    Igor's wrapper around one handler call: call
    C{handler_function(stream, data, session=session, scope=scope)}, then
    close the stream; an exception is sent as the stream's error, the stream
    closed and the exception raised again (C{SystemExit} included).
    """
    try:
        handler_function(stream, data, session=session, scope=scope)
        stream.close()
    except SystemExit:
        stream.close()
        raise
    except Exception as error:
        logging.getLogger(__name__).error(error)
        stream.send_error(str(error))
        stream.close()
        raise
