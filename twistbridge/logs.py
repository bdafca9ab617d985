"""
Logging: C{--log-format text} (twistd's own lines) or C{json} (one JSON object
per event), the access log, and reopening the log file on SIGUSR1.

Under C{twistd bridge}, L{configure_logging} builds the log observer twistd
would build (the file named by C{--logfile}, C{twistd.log} when daemonized,
stdout with C{-n}), in the chosen format, and hands it to twistd as the
application's C{ILogObserver}.  The file rotates as twistd's does (every
1,000,000 bytes); SIGUSR1 reopens it, which is what C{logrotate} needs after
moving it away.  C{--syslog} and C{--logger} keep precedence.

Every line goes through a filter that replaces the bgpy token with C{***}, and
in JSON, every event key that names a secret (C{token}, C{password},
C{secret}, C{authorization}, C{cookie}) is written as C{"[redacted]"}.

The access log: one event per HTTP request (L{access_http}), per Igor
WebSocket connection (L{access_igor}) and per bgpy message type received
(L{access_bgpy}), in the C{twistbridge.access} namespace, with an C{access}
key naming the protocol.  No bodies, no query strings, no tokens.

This module is longer than most: the text and JSON observers, the secret
scrubbing and the access log share the event format they all read.
"""

from __future__ import annotations

import re
import signal
import sys
from time import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    jsonFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python import logfile
from zope.interface import implementer

access_log = Logger(namespace="twistbridge.access")
log = Logger()

_SECRET_KEY = re.compile(
    r"token|password|passwd|secret|authorization|cookie", re.IGNORECASE
)
REDACTED = "[redacted]"


class ScrubbingFile:
    """
    A file wrapper that replaces each secret with C{***} before writing.

    @ivar secrets: the exact strings never to write.
    """

    def __init__(self, out: Any, secrets: Iterable[str] = ()) -> None:
        self._out = out
        self.secrets = tuple(s for s in secrets if s)

    def write(self, text: str) -> Any:
        """Write C{text} with every secret replaced."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return self._out.write(text)

    def flush(self) -> None:
        """Flush the underlying file."""
        self._out.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def _redacted(event: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of C{event} with secret-named keys redacted and the text added."""
    out: Dict[str, Any] = {}
    for key, value in event.items():
        if not key.startswith("log_") and _SECRET_KEY.search(key):
            value = REDACTED
        out[key] = value
    try:
        out["log_text"] = formatEvent(out)
    except Exception:  # formatEvent never raises, but a log must never fail
        out["log_text"] = str(event.get("log_format"))
    level = event.get("log_level")
    if level is not None:
        out["level"] = getattr(level, "name", str(level))
    return out


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    One JSON object per line: Twisted's C{jsonFileLogObserver} (so that
    C{eventsFromJSONLogFile} reads it back) without the record separator,
    each event with secret-named keys redacted, plus C{log_text} (the
    rendered message) and C{level} (C{"info"}, C{"warn"}, ...).
    """

    def __init__(self, out: Any) -> None:
        self._json = jsonFileLogObserver(out, recordSeparator="")

    def __call__(self, event: Dict[str, Any]) -> None:
        """Write C{event}."""
        self._json(_redacted(event))


def json_observer(out: Any) -> JSONLinesObserver:
    """The C{--log-format json} observer writing to C{out}."""
    return JSONLinesObserver(out)


class ClassicTextFormatter:
    """
    twistd's text format, C{<time> [<system>] <message>}, exactly as
    Twisted's L{formatEventAsClassicLogText} writes it, with a fast path for
    access events (one per request or message): their message formats are
    known to be plain C{str.format} fields, so they skip Twisted's generic
    formatter, and the time stamp (whole seconds) is formatted once a second.
    Any other event, or an access event that does not format plainly, goes
    through Twisted's own formatter.
    """

    def __init__(self, time_format: str = timeFormatRFC3339) -> None:
        self._time_format = time_format
        self._second: Any = None
        self._stamp = ""

    def _format_time(self, when: Any) -> str:
        return formatTime(when, self._time_format)

    def __call__(self, event: Dict[str, Any]) -> Optional[str]:
        """The line for C{event} (L{None}: nothing to write)."""
        log_format = event.get("log_format")
        if (
            log_format in _ACCESS_FORMATS
            and event.get("log_namespace") == _ACCESS_NAMESPACE
            and event.get("log_level") is _INFO
            and "log_system" not in event
            and "log_failure" not in event
        ):
            line = self._access_line(log_format, event)
            if line is not None:
                return line
        return formatEventAsClassicLogText(event, self._format_time)

    def _access_line(self, log_format: str, event: Dict[str, Any]) -> Optional[str]:
        when = event.get("log_time")
        if type(when) is not float:
            return None
        try:
            text = log_format.format_map(event)
        except Exception:
            return None  # Twisted's formatter says what went wrong
        if not text:
            return None
        second = int(when)
        if second != self._second:
            # the format has no fraction of a second and a UTC offset only
            # changes on a whole second: one stamp serves the whole second
            self._stamp = self._format_time(when)
            self._second = second
        line = f"{self._stamp} [{_ACCESS_NAMESPACE}#info] {text}"
        return line.replace("\n", "\n\t") + "\n"


def text_observer(out: Any) -> FileLogObserver:
    """twistd's text format: C{<time> [<system>] <message>}."""
    return FileLogObserver(out, ClassicTextFormatter())


def observer_for(log_format: str, out: Any) -> Any:
    """The observer of C{log_format} (C{"text"} or C{"json"}) writing to C{out}."""
    return json_observer(out) if log_format == "json" else text_observer(out)


def open_log_file(path: Optional[str], nodaemon: bool) -> Any:
    """
    Where twistd would log: stdout for C{-} or C{-n} without C{--logfile},
    else a rotating L{logfile.LogFile} (C{twistd.log} by default).

    @raise SystemExit: for C{--logfile -} without C{-n}, as twistd does.
    """
    if path == "-":
        if not nodaemon:
            raise SystemExit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    if nodaemon and not path:
        return sys.stdout
    return logfile.LogFile.fromFullPath(path or "twistd.log")


def install_reopen(log_file: Any, reactor: Any = None) -> Callable[..., None]:
    """
    Reopen C{log_file} on SIGUSR1 (for C{logrotate}); returns the handler.
    """

    def reopen(signum: int = signal.SIGUSR1, frame: Any = None) -> None:
        r = reactor
        if r is None:
            from twisted.internet import reactor as r
        r.callFromThread(_reopen, log_file)

    signal.signal(signal.SIGUSR1, reopen)
    return reopen


def _reopen(log_file: Any) -> None:
    try:
        log_file.reopen()
    except OSError as e:
        log.error(
            "cannot reopen the log file {path}: {error}", path=log_file.path, error=e
        )
        return
    log.info("log file reopened: {path}", path=log_file.path)


def _secrets(settings: Any) -> list:
    try:
        token = settings.token()
    except (OSError, AttributeError):
        token = None
    return [token] if token else []


def configure_logging(
    settings: Any, service: Any = None, twistd_options: Any = None
) -> Any:
    """
    Under twistd, make C{service} hand twistd an observer in
    C{settings.log_format}, writing where twistd would write.

    @param service: the L{twistbridge.service.BridgeService} (its
        C{log_observer} is set).
    @param twistd_options: twistd's own options (the parent of C{twistd
        bridge}'s options); without them (the service embedded in another
        program, a test) the process's logging is left alone.
    @return: the observer, or L{None} when twistd keeps its own.
    """
    if twistd_options is None or service is None:
        return None
    if twistd_options.get("syslog") or twistd_options.get("logger"):
        return None
    out = open_log_file(
        twistd_options.get("logfile"), bool(twistd_options.get("nodaemon"))
    )
    if isinstance(out, logfile.LogFile):
        install_reopen(out)
    observer = observer_for(settings.log_format, ScrubbingFile(out, _secrets(settings)))
    service.log_observer = observer
    return observer


# access log -----------------------------------------------------------------


def _client(address: Any) -> str:
    if isinstance(address, str):
        return address
    host = getattr(address, "host", None)
    if host is not None:
        return str(host)
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name or "-")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


_INFO = LogLevel.info
_ACCESS_NAMESPACE = access_log.namespace


#: L{False} once the process's only observers drop events below a level
#: above C{info} (L{level_filtered}): access events are then not even built.
_access_on = True

#: Functions told of every access event (L{add_access_hook}).
_access_hooks: List[Callable[[str, Any, Dict[str, Any]], None]] = []


def add_access_hook(hook: Callable[[str, Any, Dict[str, Any]], None]) -> None:
    """
    Call C{hook(kind, subject, fields)} for every access event, whether the
    access log is written or not: C{kind} is C{"http"}, C{"igor"} or
    C{"bgpy"}; C{subject} the HTTP request (for C{"http"}) or L{None};
    C{fields} the event's fields (for C{"igor"} and C{"bgpy"}).  The
    metrics (L{twistbridge.metrics}) count with it.
    """
    _access_hooks.append(hook)


def remove_access_hook(hook: Callable[[str, Any, Dict[str, Any]], None]) -> None:
    """Stop calling C{hook} (see L{add_access_hook})."""
    if hook in _access_hooks:
        _access_hooks.remove(hook)


def level_filtered(observers: Iterable[Any], level: LogLevel) -> list:
    """
    C{observers}, each wrapped to drop the events below C{level} (a
    L{FilteringLogObserver} with a L{LogLevelFilterPredicate}), for a
    process that logs to these observers only.

    When C{level} drops C{info} events, the access log stops building its
    events at all (they would be dropped anyway; building one costs a few
    microseconds per request or message).
    """
    global _access_on
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    _access_on = not _INFO < predicate.logLevelForNamespace(_ACCESS_NAMESPACE)
    return [FilteringLogObserver(o, [predicate]) for o in observers]


def _emit_access(log_format: str, event: Dict[str, Any]) -> None:
    """
    Send C{event} to the access log's observer at level C{info}.

    The same event L{Logger.info} builds (the same C{log_*} keys and values),
    without its generic work per call (checking the level against every
    level, merging keyword arguments): an access event is emitted for every
    request and message, so this is on every protocol's hot path.
    """
    event["log_logger"] = access_log
    event["log_level"] = _INFO
    event["log_namespace"] = _ACCESS_NAMESPACE
    event["log_source"] = None
    event["log_format"] = log_format
    event["log_time"] = time()
    access_log.observer(event)


_HTTP_FORMAT = '{client} "{method} {path} {protocol}" {code} {length}'


def access_refused(method: bytes, path: bytes, code: int) -> None:
    """
    Tell the access hooks (L{add_access_hook}) of an HTTP request refused
    from its headers alone (C{413}, C{421}, ...: see L{twistbridge.request}),
    as C{("http_refused", None, {"method", "path", "code"})}.  The refusal
    itself is logged by the request, once.
    """
    if _access_hooks:
        fields = {"method": method, "path": path, "code": code}
        for hook in _access_hooks:
            hook("http_refused", None, fields)


def access_http(request: Any) -> None:
    """
    One event for an answered HTTP request: client, method, path (without
    the query string), status code, bytes sent, user agent.
    """
    for hook in _access_hooks:
        hook("http", request, {})
    if not _access_on:
        return
    path = request.path
    agent = request.getHeader(b"user-agent")
    _emit_access(
        _HTTP_FORMAT,
        {
            "access": "http",
            "client": _client(request.getClientAddress()),
            "method": _text(request.method),
            "path": _text(path) if path is not None else "-",
            "protocol": _text(request.clientproto),
            "code": request.code,
            "length": request.sentLength,
            "user_agent": _text(agent) if agent is not None else None,
        },
    )


_IGOR_FORMAT = (
    "{client} igor {path} closed {code} after {duration:.3f}s "
    "({received} in, {sent} out)"
)


def access_igor(
    client: Any,
    path: str,
    code: Any,
    duration: float,
    received: int = 0,
    sent: int = 0,
    client_id: Any = None,
) -> None:
    """
    One event for an Igor WebSocket connection when it closes: client
    address, path, close code, seconds open, messages received and sent.
    """
    if _access_hooks:
        fields = {"code": code, "received": received, "sent": sent}
        for hook in _access_hooks:
            hook("igor", None, fields)
    if not _access_on:
        return
    _emit_access(
        _IGOR_FORMAT,
        {
            "access": "igor",
            "client": _client(client),
            "path": path,
            "code": code,
            "duration": duration,
            "received": received,
            "sent": sent,
            "client_id": client_id,
        },
    )


_BGPY_FORMAT = "{client} bgpy {message_type} {outcome}"

#: The message formats of access events: plain fields only.
_ACCESS_FORMATS = frozenset({_HTTP_FORMAT, _IGOR_FORMAT, _BGPY_FORMAT})


def access_bgpy(client: Any, message_type: str, outcome: str, wire: str = "") -> None:
    """
    One event for a bgpy message received: client address, message type
    (C{AUTH}, C{INIT}, C{EXEC}, C{EXIT}), outcome (C{OK}, C{ERROR}), wire
    format (C{json} or C{pickle}).  Never the arguments, never the token.
    """
    if _access_hooks:
        fields = {"message_type": message_type, "outcome": outcome, "wire": wire}
        for hook in _access_hooks:
            hook("bgpy", None, fields)
    if not _access_on:
        return
    _emit_access(
        _BGPY_FORMAT,
        {
            "access": "bgpy",
            "client": _client(client),
            "message_type": message_type,
            "outcome": outcome,
            "wire": wire,
        },
    )
