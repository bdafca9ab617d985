"""
flaskJSONRPCServer's postprocessers: callbacks (or WSGI apps) run on the
finished answer of a request whose HTTP status or JSON-RPC error code
matches, able to rewrite it (mode C{"rewrite"}) or only look (C{"fake"}).

The answer is held back until they ran; they run in the thread pool, in
the order added, and a C{controller.end()} stops the chain.
"""

from __future__ import annotations

import gzip
import io
import json
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

from twisted.logger import Logger

from twistbridge._internals import connection_lost
from twistbridge.jsonrpc._compathttp import request_info
from twistbridge.request import BridgeRequest

__all__ = ["MODES", "TYPES", "Controller", "run_postprocess", "postprocess_request"]

log = Logger()

#: Supported modes (the first is the default) and types, as flaskJSONRPCServer's.
MODES = ("rewrite", "fake")
TYPES = ("wsgi", "cb")


class Controller:
    """
    The third argument of a C{"cb"} postprocesser.

    @ivar lastResponse: C{(status, headers, data, dataRaw)} as it stands.
    @ivar originalResponse: the same, as the server answered.
    """

    def __init__(self, last: Tuple[Any, ...], original: Tuple[Any, ...]) -> None:
        self.lastResponse = last
        self.originalResponse = original
        self.ended = False
        self.skipped = False

    def end(self) -> None:
        """Run no further postprocesser after this one."""
        self.ended = True

    def skip(self) -> None:
        """Keep the answer as it was before this postprocesser."""
        self.skipped = True


def _status_line(code: int) -> str:
    from twisted.web.http import RESPONSES

    return f"{code} {RESPONSES.get(code, b'').decode('latin-1')}".strip()


def _rpc_errors(body: bytes, encoding: Optional[bytes]) -> List[int]:
    """The JSON-RPC error codes in an answer body."""
    try:
        if encoding == b"gzip":
            body = gzip.decompress(body)
        data = json.loads(body)
    except (ValueError, OSError, EOFError):
        return []
    items = data if isinstance(data, list) else [data]
    codes = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("error"), dict):
            code = item["error"].get("code")
            if isinstance(code, int):
                codes.append(code)
    return codes


def run_postprocess(
    server: Any,
    by_status: Dict[int, List[Tuple[str, Optional[str], Callable[..., Any]]]],
    info: Dict[str, Any],
    status: int,
    headers: List[Tuple[str, str]],
    body: bytes,
    encoding: Optional[bytes],
) -> Optional[Tuple[int, List[Tuple[str, str]], bytes]]:
    """
    Run the postprocessers matching C{status} or the answer's JSON-RPC
    error codes (any thread).  Returns the new C{(status, headers, body)},
    or L{None} when none matched.
    """
    errors = _rpc_errors(body, encoding)
    chain = list(by_status.get(status, ()))
    for code in errors:
        chain += by_status.get(code, ())
    if not chain:
        return None
    raw = {"rpcError": errors}
    original = (status, headers, _text(body, encoding), raw)
    current: List[Any] = [status, headers, _text(body, encoding)]
    for kind, mode, cb in chain:
        mode = mode or MODES[0]
        if kind == "cb":
            controller = Controller((*current, raw), original)
            result = cb(info, server, controller)
            if not controller.skipped and mode == "rewrite" and result:
                current[0] = int(result[0])
                current[1] = list(result[2]) if len(result) > 2 else []
                current[2] = result[1]
        else:
            controller = Controller((*current, raw), original)
            seen: Dict[str, Any] = {}

            def start_response(
                status_line: str, hdrs: Any, exc_info: Any = None, seen: Any = seen
            ) -> None:
                seen["status"], seen["headers"] = status_line, list(hdrs)

            environ = dict(info["environ"])
            environ["wsgi.input"] = io.BytesIO(info["data"] or b"")
            environ["flaskJSONRPCServer"] = server
            environ["flaskJSONRPCServer_end"] = controller.end
            environ["flaskJSONRPCServer_skip"] = controller.skip
            environ["flaskJSONRPCServer_lastResponse"] = (
                _status_line(current[0]),
                [current[2]] if isinstance(current[2], (str, bytes)) else current[2],
                current[1],
                raw,
            )
            environ["flaskJSONRPCServer_originalResponse"] = (
                _status_line(status),
                [original[2]],
                headers,
                raw,
            )
            result = cb(environ, start_response)
            if not controller.skipped and mode == "rewrite":
                current[2] = b"".join(_as_bytes(part) for part in result).decode(
                    "utf-8", "surrogateescape"
                )
                if "status" in seen:
                    current[0] = int(str(seen["status"]).split()[0])
                    current[1] = seen["headers"]
        if controller.ended:
            break
    return current[0], current[1], _as_bytes(current[2])


def _text(body: bytes, encoding: Optional[bytes]) -> Any:
    """An answer's body as flaskJSONRPCServer's callbacks see it: text, unless gzipped."""
    if encoding == b"gzip":
        return body
    return body.decode("utf-8", "surrogateescape")


def _as_bytes(data: Any) -> bytes:
    """A postprocesser's data as bytes: text as UTF-8, anything else as JSON."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    return json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")


def postprocess_request(
    server: Any, base: Type[BridgeRequest] = BridgeRequest
) -> Type[BridgeRequest]:
    """A request class that holds its answer back for C{server}'s postprocessers."""

    class PostprocessRequest(base):  # type: ignore[valid-type, misc]
        _held: Optional[List[bytes]] = None
        # Unknown paths answer 404 through the resource, so that the
        # postprocessers see it, as flaskJSONRPCServer's do.
        default_body_limit = server.bridge.settings.max_request_size

        def write(self, data: bytes) -> None:
            if self._held is None:
                self._held = []
            self._held.append(data)

        def finish(self) -> None:
            held, self._held = self._held or [], None
            body = b"".join(held)
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, vs in self.responseHeaders.getAllRawHeaders()
                for v in vs
            ]
            info = request_info(self)
            encoding = self.responseHeaders.getRawHeaders(b"content-encoding", [None])[
                0
            ]
            by_status = server.settings["postprocess"]["byStatus"]
            d = server.bridge.offloader.in_thread(
                run_postprocess,
                server,
                by_status,
                info,
                self.code,
                headers,
                body,
                encoding,
            )

            def answer(result: Any) -> None:
                if self.finished or connection_lost(self):
                    return
                if result is not None:
                    code, new_headers, body_ = result
                    self.setResponseCode(code)
                    for name in {k for k, _ in headers}:
                        self.responseHeaders.removeHeader(name)
                    for name, value in new_headers:
                        self.responseHeaders.addRawHeader(name, value)
                    self.setHeader(b"content-length", str(len(body_)).encode())
                else:
                    body_ = body
                if body_:
                    base.write(self, body_)
                base.finish(self)

            def failed(failure: Any) -> None:
                log.failure("flaskJSONRPCServer postprocesser raised", failure)
                answer(None)

            d.addCallbacks(answer, failed)

    return PostprocessRequest
