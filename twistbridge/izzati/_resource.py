"""
The izzati endpoint's Twisted adapter: the resource behind C{POST /}.

The body never sits in memory: L{IzzatiResource.body_consumer} hands each
chunk, as it arrives, to the core's L{BodyParser}, which writes file parts to
temporary files (see L{twistbridge.request} for how a resource gets the body
early).  Once the body is complete the callback runs through the bridge's
offloader; its result is encoded by the core and written back, a
L{file_return} streamed by a producer.  Temporary files are closed when the
request ends, whatever happened.

The module is somewhat over 400 lines because one request's way through
the endpoint (its consumer, the resource's early hooks, the exchange with
the callback and the answer) reads best in one place.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from twisted.internet import defer
from twisted.internet.task import cooperate
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge.errors import Busy
from twistbridge.izzati._core import (
    MAX_FIELDS_SIZE,
    BodyParser,
    FileReturn,
    IzzatiError,
    Response,
    body_kind,
    encode_result,
    error_response,
    exception_message,
    json_response,
)
from twistbridge.izzati._files import DiskBudget, UploadStore
from twistbridge.izzati._sender import SENT, FileProducer
from twistbridge.izzati._splice import receiver as splice_receiver
from twistbridge.offload import Offloader, OffloadError
from twistbridge.registry import Registry
from twistbridge.request import Refusal

log = Logger()

_CHUNK = 64 * 1024


class UploadConsumer:
    """
    Takes one request's body as it arrives (a C{body_consumer}, see
    L{twistbridge.request}): parses it, file parts into temporary files.

    @ivar store: the request's temporary files.
    @ivar parser: the core parser.
    """

    def __init__(
        self,
        content_type: Optional[str],
        directory: Optional[str] = None,
        peer: str = "?",
        budget: Optional[DiskBudget] = None,
    ) -> None:
        self.store = UploadStore(directory, budget)
        self.parser = BodyParser(
            content_type, self.store.open_file, self.store.done_file
        )
        self.peer = peer
        self.received = 0
        #: the L{SpliceReceiver<twistbridge.izzati._splice.SpliceReceiver>}
        #: taking file parts past Python, or L{None}
        self.splicer: Any = None

    def write(self, data: bytes) -> None:
        """
        Parse the next chunk of the body.

        @raise twistbridge.request.Refusal: 507 once the upload disk is full.
        """
        self.received += len(data)
        self.parser.feed(data)
        if self.store.full is not None:
            raise Refusal(507, self.store.full, [(b"Retry-After", b"10")])
        if self.splicer is not None:
            self.splicer.arm()

    def abort(self, reason: Optional[Failure]) -> None:
        """The body will never complete: delete the temporary files now."""
        self._stop_splicing()
        self.store.close()
        if reason is not None:
            log.info(
                "izzati: upload from {peer} ended after {received} bytes: {why}",
                peer=self.peer,
                received=self.received,
                why=reason.getErrorMessage(),
            )

    def finish(self) -> Any:
        """The body is complete: C{(text, files)} or an L{IzzatiError}."""
        self._stop_splicing()
        return self.parser.finish()

    def _stop_splicing(self) -> None:
        splicer, self.splicer = self.splicer, None
        if splicer is not None:
            splicer.close()


class _Discard:
    """A body consumer that drops the body (no callback is registered)."""

    def __init__(self) -> None:
        self.store = UploadStore()

    def write(self, data: bytes) -> None:
        """Drop C{data}."""

    def abort(self, reason: Failure) -> None:
        """Nothing to release."""

    def finish(self) -> Any:
        """Nothing to call back with."""
        return IzzatiError(404, "no izzati callback is registered on this server")


def _header(request: Any, name: bytes) -> Optional[str]:
    values = request.requestHeaders.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


def _peer(request: Any) -> str:
    return str(getattr(request.getClientAddress(), "host", "?"))


class IzzatiResource(Resource):
    """
    C{POST /}: the izzati upload endpoint of a bridge.

    @ivar temp_dir: where uploads are written (L{None}: C{$TMPDIR}).
    @ivar disk: the temporary disk all in-flight uploads share
        (C{max_upload_disk}).
    """

    isLeaf = True
    #: Whether large file parts may be spliced past Python (see
    #: L{twistbridge.izzati._splice}).
    splice = True

    def __init__(
        self, registry: Registry, offloader: Offloader, temp_dir: Optional[str] = None
    ) -> None:
        Resource.__init__(self)
        self.registry = registry
        self.offloader = offloader
        self.temp_dir = temp_dir
        self.disk = DiskBudget(registry.settings.max_upload_disk)

    def upload_limit(self) -> int:
        """The request body limit: the registration's, else the settings'."""
        registration = self.registry.izzati_registration
        if registration is not None and registration.max_upload_size is not None:
            return int(registration.max_upload_size)
        return int(self.registry.settings.max_upload_size)

    def max_body_size(self, request: Any) -> Optional[int]:
        """
        The upload limit for multipart bodies; bodies held in memory (forms,
        JSON) are also held to L{MAX_FIELDS_SIZE}.
        """
        limit = self.upload_limit()
        if body_kind(_header(request, b"Content-Type")) != "multipart":
            limit = min(limit, MAX_FIELDS_SIZE)
        return limit

    def body_consumer(self, request: Any) -> Any:
        """
        Parse the body as it arrives (see L{twistbridge.request}).  A multipart
        body reserves its C{Content-Length} of the upload disk first.

        @raise twistbridge.request.Refusal: 507 when the upload disk has no room.
        """
        if self.registry.izzati_registration is None:
            return _Discard()
        content_type = _header(request, b"Content-Type")
        consumer = UploadConsumer(
            content_type, self.temp_dir, _peer(request), self.disk
        )
        length = _header(request, b"Content-Length")
        if body_kind(content_type) == "multipart" and length and length.isdigit():
            if not consumer.store.reserve(int(length)):
                raise Refusal(
                    507,
                    self.disk.full_message(int(length)),
                    [(b"Retry-After", b"10")],
                )
            if self.splice and consumer.parser.error is None:
                consumer.splicer = splice_receiver(request, consumer, int(length))
        return consumer

    def render_POST(self, request: Any) -> Any:
        """Parse (if not done already), call back, answer."""
        consumer = getattr(request, "body_consumer", None)
        if consumer is not None:
            ready: defer.Deferred = defer.succeed(consumer)
        else:
            ready = self._parse_content(request)
        exchange = _Exchange(self.registry, self.offloader, request)
        ready.addCallback(exchange.start)
        ready.addErrback(exchange.bug)
        return NOT_DONE_YET

    def _parse_content(self, request: Any) -> defer.Deferred:
        """Parse C{request.content} (a request that did not go through
        L{twistbridge.web.BridgeRequest}), cooperatively."""
        try:
            consumer = self.body_consumer(request)
        except Refusal as e:
            return defer.succeed(_Failed(IzzatiError(e.code, e.message)))
        content = request.content
        size = content.seek(0, 2)
        content.seek(0)
        limit = self.max_body_size(request)
        if limit is not None and size > limit:
            consumer.abort(None)
            return defer.succeed(
                _Failed(
                    IzzatiError(
                        413,
                        f"request body too large: {size} bytes, the limit is {limit}",
                    )
                )
            )

        def feed() -> Any:
            while True:
                chunk = content.read(_CHUNK)
                if not chunk:
                    return
                consumer.write(chunk)
                yield None

        task = cooperate(feed())
        return task.whenDone().addCallback(lambda _: consumer)


class _Failed:
    """A consumer-like outcome that is already an error."""

    def __init__(self, error: IzzatiError) -> None:
        self.error = error
        self.store = UploadStore()

    def finish(self) -> IzzatiError:
        return self.error


class _Exchange:
    """One request's way through the callback and back."""

    def __init__(self, registry: Registry, offloader: Offloader, request: Any) -> None:
        self.registry = registry
        self.offloader = offloader
        self.request = request
        self.store: UploadStore = UploadStore()
        self.call: Optional[defer.Deferred] = None
        self.parsing: Optional[defer.Deferred] = None
        self.handler_done = False
        self.lost = False

    def start(self, consumer: Any) -> None:
        """The body is in: parse what is left of it, then call back."""
        self.store = consumer.store
        self.request.notifyFinish().addBoth(self._ended)
        parser = getattr(consumer, "parser", None)
        if parser is not None and parser.heavy:
            # A large form or JSON body: decoding it is one long computation,
            # which the reactor must not wait for.
            self.parsing = self.offloader.in_thread(consumer.finish)
            self.parsing.addCallback(self.parsed)
            self.parsing.addErrback(self._parse_failed)
            self.parsing.addErrback(self.bug)
            return
        self.parsed(consumer.finish())

    def _parse_failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError):
            return
        if failure.check(OffloadError):
            log.warn(
                "izzati: cannot parse the body of {peer}: {why}",
                peer=_peer(self.request),
                why=failure.getErrorMessage(),
            )
            self.respond(json_response(503, {"error": "server busy, try again"}))
            return
        failure.raiseException()

    def parsed(self, outcome: Any) -> None:
        """The body is parsed: C{(text, files)} or an L{IzzatiError}."""
        self.parsing = None
        if self.lost:
            return
        if isinstance(outcome, IzzatiError):
            log.warn(
                "izzati: {code} for {peer}: {message}",
                code=outcome.code,
                peer=_peer(self.request),
                message=outcome.message,
            )
            self.respond(error_response(outcome))
            return
        text, files = outcome
        registration = self.registry.izzati_registration
        # Without one, the body was discarded into a 404 (handled above).
        assert registration is not None
        args: List[Any] = list(registration.args)
        if registration.queue_first and args:
            args = [args[0], text, files, *args[1:]]
        else:
            args = [text, files, *args]
        self.call = self.offloader.call(
            registration.handler, *args, **registration.kwargs
        )
        self.call.addCallbacks(self._returned, self._raised)
        self.call.addErrback(self.bug)

    def _ended(self, result: Any) -> None:
        """The request is over (answered, or the client went away)."""
        if isinstance(result, Failure):
            self.lost = True
            if self.parsing is not None:
                self.parsing.cancel()
            if not self.handler_done and self.call is not None:
                log.info(
                    "izzati: client {peer} went away; cancelling its callback",
                    peer=_peer(self.request),
                )
                self.store.release()
                self.call.cancel()
                return
        self.store.close()

    def _returned(self, result: Any) -> None:
        self.handler_done = True
        if self.lost:
            return
        try:
            encoded = encode_result(result)
        except IzzatiError as e:
            log.error("izzati: {message}", message=e.message)
            self.respond(error_response(e))
            return
        if isinstance(encoded, FileReturn):
            self.send_file(encoded)
        else:
            self.respond(encoded)

    def _raised(self, failure: Failure) -> None:
        self.handler_done = True
        if self.lost:
            if not failure.check(defer.CancelledError):
                log.failure("izzati callback raised (client gone)", failure)
            return
        if failure.check(Busy):  # refused unrun: the client may retry
            log.warn("izzati: {message}; answering 503", message=str(failure.value))
            self.request.setHeader(b"Retry-After", b"1")
            self.respond(json_response(503, {"error": str(failure.value)}))
            return
        log.failure(
            "izzati callback raised; answering 500 to {peer}",
            failure,
            peer=_peer(self.request),
        )
        self.respond(json_response(500, {"error": exception_message(failure.value)}))

    def bug(self, failure: Failure) -> None:
        """An error of our own: log it, answer 500 if still possible."""
        log.failure("izzati endpoint error", failure)
        if not self.lost and not self.request.finished:
            try:
                self.respond(json_response(500, {"error": "internal error"}))
            except Exception:  # pragma: no cover - last resort
                pass

    def respond(self, response: Response) -> None:
        """Write an encoded response and finish the request."""
        if self.lost:
            return
        request = self.request
        request.setResponseCode(response.code)
        request.setHeader(b"Content-Type", response.content_type.encode("latin-1"))
        request.setHeader(b"Content-Length", b"%d" % len(response.body))
        request.write(response.body)
        request.finish()

    def send_file(self, result: FileReturn) -> None:
        """Stream a L{file_return} with a producer (L{FileProducer})."""
        try:
            f = open(result.path, "rb")
            size = os.fstat(f.fileno()).st_size
        except OSError as e:
            log.error(
                "izzati: file_return({path!r}) cannot be sent: {error}",
                path=result.path,
                error=e,
            )
            name = os.path.basename(result.path)
            self.respond(
                json_response(
                    500, {"error": f"cannot send file {name!r}: {e.strerror}"}
                )
            )
            return
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", result.content_type.encode("latin-1"))
        request.setHeader(b"Content-Length", b"%d" % size)

        def sent(outcome: str) -> None:
            # A file that shrank: the producer logged it and closed.
            f.close()
            if outcome == SENT and not self.lost and not request.finished:
                request.finish()

        FileProducer(request, f, size, sent).start()
