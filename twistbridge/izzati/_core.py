"""
The izzati upload endpoint's pure core: request bodies in, responses out.

Nothing here touches a socket or the file system by itself:

    - L{BodyParser} takes the request's C{Content-Type} and the body in chunks
      as they arrive, and gives C{(text, files)} or an L{IzzatiError}.  File
      parts go to sinks made by a factory the caller passes in (the Twisted
      adapter gives temporary files), so the parser never holds a file in
      memory.
    - L{encode_result} turns what the callback returned into a L{Response}
      (status, content type, body) or the L{FileReturn} to stream.
    - L{safe_filename} turns a client's file name into one that is safe to
      create inside a directory.

Errors are values: L{IzzatiError} carries the HTTP code and the message sent
to the client as C{{"error": message}}.

This module is longer than most because it is the whole of izzati's pure
rules: body kinds, the streaming multipart parser's decisions (with its
fast path through a file part's body, L{payload_length} and
L{find_delimiter}, which the splicing adapter shares), field and file
limits, and the answer encodings, which share their limit values and error
texts.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import unicodedata
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    List,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import parse_qsl

import multipart
from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
)

from twistbridge._json import JSONValue, TooManyContainers, loads, loads_bounded
from twistbridge.errors import error_text, not_json_text

#: The multipart parser's state inside a part's body (see L{_holds_back}).
_BODY_STATE = getattr(multipart, "_BODY", None)

#: Bytes of non-file data (urlencoded forms, JSON bodies, multipart text
#: fields together) kept in memory per request.
MAX_FIELDS_SIZE = 16 * 1024**2
#: Parts one multipart body may have (as Werkzeug's C{max_form_parts}).
MAX_PARTS = 1000
#: Fields one C{application/x-www-form-urlencoded} body may have; the body is
#: refused as soon as it goes over, before the rest of it is parsed.
MAX_FIELDS = 1000
#: Bytes of one urlencoded field (C{name=value}, still percent-encoded).
MAX_FIELD_SIZE = 1024**2
#: Bodies held in memory (forms, JSON) of at least this many bytes are parsed
#: in the thread pool; smaller ones are parsed at once, in the reactor.
INLINE_PARSE = 64 * 1024
#: Longest header line of one multipart part.
MAX_PART_HEADER = 8192

MULTIPART = "multipart/form-data"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class IzzatiError(Exception):
    """
    A request the endpoint answers with an error instead of calling back.

    @ivar code: the HTTP status code.
    @ivar message: what was wrong, sent as C{{"error": message}}.
    """

    def __init__(self, code: int, message: str) -> None:
        Exception.__init__(self, code, message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"IzzatiError({self.code}, {self.message!r})"


class FileSink(Protocol):
    """Where the bytes of one file part go (a writable binary file will do)."""

    def write(self, data: Union[bytes, bytearray, memoryview]) -> object:
        """Append C{data}."""


#: What C{open_file} makes for each file part (the parser only keeps it).
Item = TypeVar("Item")

#: C{open_file(filename, content_type, field_name) -> (item, sink)}: called
#: for each file part; C{item} goes into C{data}, C{sink} receives the part's
#: bytes, and C{done_file(item, size)} is called when the part is complete.
OpenFile = Callable[[str, str, str], Tuple[Item, FileSink]]

#: The C{text} dict of a request: a form's fields (a string, or a list of
#: them for a field sent several times), or the members of a JSON body.
Text = Dict[str, JSONValue]


def media_type(content_type: Optional[str]) -> Tuple[str, Dict[str, str]]:
    """
    Split a C{Content-Type} value into its lower-cased media type and its
    parameters (names lower-cased, values unquoted).
    """
    if not content_type:
        return "", {}
    kind, _, rest = content_type.partition(";")
    params: Dict[str, str] = {}
    for match in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', rest):
        name, value = match.group(1).lower(), match.group(2).strip()
        if value[:1] == '"' and value[-1:] == '"' and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name] = value
    return kind.strip().lower(), params


def body_kind(content_type: Optional[str]) -> str:
    """
    C{"multipart"}, C{"form"}, C{"json"}, C{"none"} (no Content-Type) or
    C{"other"} for a request's C{Content-Type}.
    """
    if not content_type:
        return "none"
    kind = content_type.partition(";")[0].strip().lower()
    if not kind:
        return "none"
    if kind == MULTIPART:
        return "multipart"
    if kind == FORM:
        return "form"
    if kind == JSON or (kind.startswith("application/") and kind.endswith("+json")):
        return "json"
    return "other"


def text_from_pairs(pairs: Iterable[Tuple[str, str]]) -> Text:
    """
    Build the C{text} dict: a field sent once is its value, a field sent
    several times the list of its values, in order.
    """
    text: Text = {}
    many: Dict[str, List[JSONValue]] = {}
    for name, value in pairs:
        if name in many:
            many[name].append(value)
        elif name in text:
            many[name] = [text[name], value]
            text[name] = many[name]
        else:
            text[name] = value
    return text


class BodyParser(Generic[Item]):
    """
    Parse one izzati request body as it arrives, without I/O of its own.

    Feed it with L{feed} (every chunk, in order), then call L{finish}.  After
    the first error, further data is ignored and L{finish} returns it.

    @ivar kind: the body kind (see L{body_kind}).
    @ivar error: the first L{IzzatiError}, or L{None}.
    @ivar files: file items made so far, in order (the caller cleans them up
        whatever happens).
    """

    def __init__(
        self,
        content_type: Optional[str],
        open_file: OpenFile[Item],
        done_file: Callable[[Item, int], None] = lambda item, size: None,
        max_fields_size: int = MAX_FIELDS_SIZE,
        max_parts: int = MAX_PARTS,
        max_fields: int = MAX_FIELDS,
        max_field_size: int = MAX_FIELD_SIZE,
    ) -> None:
        self.kind = body_kind(content_type)
        self.error: Optional[IzzatiError] = None
        self.files: List[Item] = []
        self._open_file = open_file
        self._done_file = done_file
        self._max_fields = max_fields_size
        self._max_count = max_fields
        self._max_field = max_field_size
        self._separators = 0
        self._piece = 0
        self._buffer: List[bytes] = []
        self._buffered = 0
        self._received = 0
        self._pairs: List[Tuple[str, str]] = []
        self._multipart: Optional[PushMultipartParser] = None
        self._sink: Optional[FileSink] = None
        self._field: Optional[List[bytes]] = None
        self._field_name = ""
        self._field_charset = "utf-8"
        self._item: Optional[Item] = None
        self._segment: Optional[MultipartSegment] = None
        self._part_size = 0
        if self.kind == "multipart":
            boundary = media_type(content_type)[1].get("boundary")
            if not boundary:
                self.error = IzzatiError(400, "multipart/form-data without a boundary")
                return
            try:
                self._multipart = PushMultipartParser(
                    boundary,
                    max_header_size=MAX_PART_HEADER,
                    max_segment_count=max_parts,
                )
            except MultipartError as e:
                self.error = IzzatiError(400, f"bad multipart boundary: {e}")
        elif self.kind == "other":
            self.error = IzzatiError(
                400,
                f"unsupported Content-Type {media_type(content_type)[0]!r}: send "
                f"{MULTIPART}, {FORM} or {JSON}",
            )

    def feed(self, data: bytes) -> None:
        """Parse the next chunk of the body."""
        if self.error is not None or not data:
            return
        self._received += len(data)
        if self._multipart is not None:
            try:
                if self.file_payload() is not None:
                    data = self._payload_first(data)
                    if not data:
                        return
                self._events(self._multipart.parse(data))
            except IzzatiError as e:
                self.error = e
            except ParserLimitReached as e:
                self.error = IzzatiError(413, f"multipart body over a limit: {e}")
            except MultipartError as e:
                self.error = IzzatiError(400, f"malformed multipart body: {e}")
            except OSError as e:
                self.error = IzzatiError(500, f"cannot store the upload: {e.strerror}")
            return
        if self.kind == "none":
            self.error = IzzatiError(
                400,
                f"a request body needs a Content-Type: {MULTIPART}, {FORM} or {JSON}",
            )
            return
        self._buffered += len(data)
        if self._buffered > self._max_fields:
            self.error = self._too_big()
        elif self.kind == "form":
            self.error = self._check_form(data)
        if self.error is not None:
            self._buffer = []
            return
        self._buffer.append(data)

    def _check_form(self, data: bytes) -> Optional[IzzatiError]:
        """
        Count the fields and measure the one in progress, with C-speed
        byte operations only: nothing is split or decoded before the whole
        body is known to be within the limits.
        """
        count = data.count(b"&")
        self._separators += count
        if self._separators >= self._max_count:
            return IzzatiError(
                413,
                f"form body has more than {self._max_count} fields (send large "
                f"data as files or as JSON)",
            )
        first = data.find(b"&")
        if first < 0:
            self._piece += len(data)
        else:
            if self._piece + first > self._max_field:
                return self._field_too_big()
            last = data.rfind(b"&")
            if count > 1:
                # At most MAX_FIELDS pieces: the count was checked above.
                middle = data[first + 1 : last].split(b"&")
                if max(map(len, middle)) > self._max_field:
                    return self._field_too_big()
            self._piece = len(data) - last - 1
        if self._piece > self._max_field:
            return self._field_too_big()
        return None

    def _field_too_big(self) -> IzzatiError:
        return IzzatiError(
            413,
            f"a form field is over {self._max_field} bytes (send large data as files)",
        )

    def _payload_first(self, data: bytes) -> bytes:
        """
        Inside a file part's body (L{file_payload}), hand the part's bytes
        to its sink past the multipart parser, which would only search them
        for the delimiter more slowly (L{find_delimiter}); what is left
        (from the delimiter on) is for the parser.
        """
        delimiter = self.delimiter
        found = find_delimiter(data, delimiter)
        kept = payload_length(data, delimiter, 0, len(data), found)
        if not kept:
            return data
        assert self._sink is not None  # (file_payload)
        self._sink.write(data if kept == len(data) else memoryview(data)[:kept])
        self.took_payload(kept)
        self._received -= kept  # (counted by feed already)
        return data[kept:]

    @property
    def heavy(self) -> bool:
        """
        Whether L{finish} has enough to do (a large form or JSON body) that
        it should run in the thread pool rather than in the reactor.
        """
        return self.error is None and self._buffered >= INLINE_PARSE

    def _too_big(self) -> IzzatiError:
        return IzzatiError(
            413, f"form fields over {self._max_fields} bytes (send large data as files)"
        )

    def _events(
        self, events: Iterable[Union[MultipartSegment, bytes, bytearray, None]]
    ) -> None:
        for event in events:
            if event is None:
                self._end_part()
            elif isinstance(event, (bytes, bytearray)):
                if self._sink is not None:
                    self._part_size += len(event)
                    self._sink.write(event)
                elif self._field is not None:
                    self._buffered += len(event)
                    if self._buffered > self._max_fields:
                        raise self._too_big()
                    self._field.append(bytes(event))
            else:
                self._start_part(event)

    def _start_part(self, segment: MultipartSegment) -> None:
        if segment.filename is not None:
            item, sink = self._open_file(
                segment.filename,
                segment.content_type or "application/octet-stream",
                segment.name or "",
            )
            self.files.append(item)
            self._item, self._sink, self._part_size = item, sink, 0
            self._segment = segment
        else:
            self._field = []
            self._field_name = segment.name or ""
            charset = (segment.charset or "utf-8").lower()
            self._field_charset = charset if _known_charset(charset) else "utf-8"

    def _end_part(self) -> None:
        if self._sink is not None:
            item, self._item, self._sink = self._item, None, None
            self._segment = None
            # An item was made with the sink (_start_part).
            self._done_file(item, self._part_size)  # type: ignore[arg-type]
        elif self._field is not None:
            raw = b"".join(self._field)
            self._field = None
            self._pairs.append(
                (self._field_name, raw.decode(self._field_charset, "replace"))
            )

    @property
    def delimiter(self) -> bytes:
        """What ends a multipart part's body: CRLF, C{--} and the boundary."""
        assert self._multipart is not None  # asked only of a multipart body
        delimiter: bytes = b"\r\n--" + self._multipart.boundary
        return delimiter

    def file_payload(self) -> Optional[Item]:
        """
        The file item the next bytes of the body go to, unchanged, up to
        the next delimiter (see L{payload_length}): a file part's body is in
        progress, the part names no length of its own, and the parser holds
        back no bytes that may begin a delimiter.  L{None} otherwise.

        Whoever then takes such bytes past L{feed} (writing them where the
        item's sink would) says so with L{took_payload}; the bytes from the
        delimiter on go to L{feed}, as usual.
        """
        segment = self._segment
        if (
            segment is None
            or self.error is not None
            or self._multipart is None
            or _holds_back(self._multipart)
            or any(name == "Content-Length" for name, _ in segment.headerlist)
        ):
            return None
        return self._item

    def took_payload(self, size: int) -> None:
        """C{size} bytes of the file part in progress were stored past
        L{feed} (see L{file_payload})."""
        assert self._segment is not None  # only while file_payload() is not None
        self._segment.bytes_received += size
        self._part_size += size
        self._received += size

    def finish(self) -> Union[Tuple[Text, List[Item]], IzzatiError]:
        """
        The body is complete: C{(text, files)}, or the L{IzzatiError} that
        says what was wrong with it.
        """
        if self.error is None:
            try:
                result = self._finish()
            except IzzatiError as e:
                self.error = e
            else:
                return result
        return self.error

    def _finish(self) -> Tuple[Text, List[Item]]:
        if self._multipart is not None:
            try:
                self._events(self._multipart.parse(b""))
            except ParserLimitReached as e:
                raise IzzatiError(413, f"multipart body over a limit: {e}") from None
            except MultipartError as e:
                raise IzzatiError(
                    400,
                    f"malformed multipart body ({self._received} bytes received): {e}",
                ) from None
            return text_from_pairs(self._pairs), self.files
        body = b"".join(self._buffer)
        self._buffer = []
        if self.kind == "none":
            return {}, []
        if self.kind == "form":
            text = body.decode("utf-8", "replace")
            return text_from_pairs(parse_qsl(text, keep_blank_values=True)), []
        return parse_json_text(body), []


def _holds_back(parser: PushMultipartParser) -> bool:
    """
    Whether C{parser} keeps bytes it was fed but has not passed on (the
    start of what may be a delimiter), or is not in a part's body.

    Why private: the parser offers no public view of its state; it keeps
    it in C{_state} and the bytes in C{_buffer} (multipart 2.0).  A parser
    without them counts as holding back: the fast path is then never taken
    (tests/izzati/test_core_payload.py fails, saying so).
    """
    state = getattr(parser, "_state", None)
    return bool(getattr(parser, "_buffer", True)) or state is not _BODY_STATE


class _Searchable(Protocol):
    def find(self, sub: bytes, start: int, end: int) -> int: ...

    def rfind(self, sub: bytes, start: int, end: int) -> int: ...

    def __getitem__(self, index: slice) -> bytes: ...


def payload_length(
    data: _Searchable,
    delimiter: bytes,
    start: int,
    end: int,
    found: Optional[int] = None,
) -> int:
    """
    How many bytes of C{data[start:end]} (bytes, or a memory map) are a
    part's payload, when the part's body is in progress and nothing is held
    back before C{start} (L{BodyParser.file_payload}): those before the
    first delimiter, or else all but a last piece that may begin one.

    The rule is the multipart parser's own, byte for byte: what follows
    goes to the parser, which finds the same delimiter there.

    @param found: where the first delimiter in C{data[start:end]} is, or -1
        for none, when the caller searched already; L{None}: search here.
    """
    index = data.find(delimiter, start, end) if found is None else found
    if index >= 0:
        return index - start
    index = data.rfind(b"\r", max(start, end - (len(delimiter) - 1)), end)
    if index < 0 or not delimiter.startswith(data[index:end]):
        return end - start
    return index - start


def _libc_memmem() -> Any:
    """The C library's C{memmem}, or L{None} where it cannot be called."""
    try:
        import ctypes

        memmem = ctypes.CDLL(None).memmem
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    memmem.restype = ctypes.c_void_p
    memmem.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    return memmem


#: C{memmem(3)}, about twice as fast as C{bytes.find} over random data,
#: the multipart parser's search (L{None} where there is none).
memmem = _libc_memmem()


def find_delimiter(data: bytes, delimiter: bytes) -> int:
    """Where the first C{delimiter} in C{data} starts, or -1 (as
    C{data.find(delimiter)}, with L{memmem} for C{bytes})."""
    if memmem is None or type(data) is not bytes:
        return data.find(delimiter)
    import ctypes

    at = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    hit = memmem(at, len(data), delimiter, len(delimiter))
    return -1 if hit is None else hit - at


def _known_charset(name: str) -> bool:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def parse_json_text(body: bytes) -> Text:
    """
    Decode a JSON request body into the C{text} dict.

    A large body is decoded by L{twistbridge._json.loads_bounded} (it runs
    in a pool thread): other clients keep being served while it parses, and
    one of more than 100,000 arrays and objects is refused.

    @raise IzzatiError: 400 for a body that is not JSON, or not an object;
        413 for one of too many arrays and objects.
    """
    if not body.strip():
        return {}
    try:
        value = (
            loads(body, allow_nan=True, fallback=json.loads)
            if len(body) < 65536
            else loads_bounded(body, 100_000)
        )
    except TooManyContainers as e:
        raise IzzatiError(413, f"JSON body holds {e}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise IzzatiError(400, f"body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise IzzatiError(
            400, f"a JSON body must be an object, not {type(value).__name__}"
        )
    return value


# --- file names ----------------------------------------------------------

_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}


def safe_filename(name: object, default: str = "upload") -> str:
    """
    A file name safe to create inside a directory, from a client's file name.

    Only the last path component is kept (C{/} and C{\\} both separate);
    control characters (NUL included) and characters Windows forbids are
    dropped; leading dots and spaces go (no C{..}, no hidden files); Windows
    device names get a C{_} prefix; the result is at most 200 bytes of UTF-8.
    Letters of every script are kept.  An empty result is C{default}.
    """
    text = unicodedata.normalize("NFC", str(name or ""))
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(
        c for c in text if unicodedata.category(c)[0] != "C" and c not in '<>:"|?*'
    )
    text = text.strip().lstrip(". ").rstrip(". ")
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    encoded = text.encode("utf-8")
    if len(encoded) > 200:
        stem, dot, ext = text.rpartition(".")
        ext = ext if dot and len(ext.encode("utf-8")) <= 16 else ""
        room = 200 - len(ext.encode("utf-8")) - (1 if ext else 0)
        stem = (stem if ext else text).encode("utf-8")[:room].decode("utf-8", "ignore")
        text = f"{stem}.{ext}" if ext else stem
    return text or default


# --- responses -----------------------------------------------------------


#: A file's path: a string or an C{os.PathLike} of one.
StrPath = Union[str, "os.PathLike[str]"]


class FileReturn:
    """
    A file to send back as the response (see L{file_return}).

    @ivar path: the file's path.
    @ivar content_type: the C{Content-Type} sent with it.
    """

    def __init__(self, path: StrPath, content_type: Optional[str] = None) -> None:
        self.path = os.fspath(path)
        self.content_type = content_type or guess_content_type(self.path)

    def __repr__(self) -> str:
        return f"file_return({self.path!r})"


def guess_content_type(path: StrPath) -> str:
    """The content type of a file, guessed from its name."""
    kind, encoding = mimetypes.guess_type(os.fspath(path))
    if kind is None or encoding is not None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", JSON):
        return f"{kind}; charset=utf-8"
    return kind


def file_return(path: StrPath, content_type: Optional[str] = None) -> FileReturn:
    """
    Answer with the file at C{path}, streamed, with a content type guessed
    from its name (or C{content_type}).
    """
    return FileReturn(path, content_type)


class Response:
    """
    An encoded response.

    @ivar code: the HTTP status code.
    @ivar content_type: the exact C{Content-Type} header value.
    @ivar body: the body.
    """

    __slots__ = ("code", "content_type", "body")

    def __init__(self, code: int, content_type: str, body: bytes) -> None:
        self.code = code
        self.content_type = content_type
        self.body = body

    def __repr__(self) -> str:
        return f"Response({self.code}, {self.content_type!r}, {self.body[:60]!r})"


def json_response(code: int, value: object) -> Response:
    """C{value} as JSON, with C{Content-Type: application/json} exactly."""
    # The standard library's encoder: the answers are the original izzati's
    # byte for byte (", " and ": " between items), which orjson cannot write.
    return Response(code, JSON, json.dumps(value).encode("utf-8"))


def error_response(error: IzzatiError) -> Response:
    """The response for an L{IzzatiError}: C{{"error": message}}."""
    return json_response(error.code, {"error": error.message})


def encode_result(result: object) -> Union[Response, FileReturn]:
    """
    Turn what the callback returned into a response: a L{FileReturn} as is,
    C{bytes} as C{application/octet-stream}, C{str} as C{text/plain}, and
    anything else (dict, list, number, None) as JSON.

    @raise IzzatiError: 500 for a value that cannot be sent.
    """
    if isinstance(result, FileReturn):
        return result
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(200, "application/octet-stream", bytes(result))
    if isinstance(result, str):
        return Response(200, "text/plain; charset=utf-8", result.encode("utf-8"))
    try:
        return json_response(200, result)
    except (TypeError, ValueError):
        raise IzzatiError(500, not_json_text(result)) from None


def exception_message(exc: BaseException) -> str:
    """
    What a client sees of a callback's exception: its class and message
    (L{twistbridge.errors.error_text}).
    """
    return error_text(exc)
