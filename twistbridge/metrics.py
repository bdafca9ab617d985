"""
Prometheus metrics: C{GET /metrics} on the C{--metrics-port} listener::

    twistd -n bridge --metrics-port 9102
    curl -s http://127.0.0.1:9102/metrics

Off by default.  Counters are fed by the access log's events (one per HTTP
request, per Igor connection, per bgpy message; see L{twistbridge.logs}),
so the protocols carry no metrics code of their own; everything that is a
level (pools, connections, Igor clients and sessions, bgpy state, upload
disk) is read from the runtime when Prometheus scrapes.  Every label has a
bounded set of values: no client ids, addresses or paths from clients.

The text format and the metric families are C{prometheus_client}'s, the
maintained Python client of Prometheus; each bridge has a registry of its
own (not the library's global one), so two bridges in one process do not
mix their figures.  The counters themselves are plain numbers (L{_Counts},
and for HTTP one L{_Endpoint} per endpoint, found by the request's path):
counting is on every request's path, and the reactor thread is the only
one that counts and scrapes.

The module is over 400 lines because it holds every family the page lists
(docs/operations.rst) in one place: the counters, the levels and the
listener's resource.
"""

from __future__ import annotations

from bisect import bisect_left
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString
from twisted.application.service import Service
from twisted.web.resource import Resource
from twisted.web.server import Site

from twistbridge import logs

if TYPE_CHECKING:
    from twistbridge.runtime import Runtime

__all__ = ["BridgeMetrics", "MetricsResource", "MetricsService", "metrics_site"]

#: What an HTTP refusal's status code says about why (the refusal reasons).
REFUSAL_CODES = {
    400: "bad_request",
    403: "origin",
    408: "timeout",
    413: "size",
    421: "host",
    431: "header_size",
    503: "busy",
    507: "disk",
}

#: bgpy message types counted under their own name; any other is "other".
BGPY_TYPES = frozenset({"AUTH", "INIT", "EXEC", "EXIT"})

#: WebSocket close codes counted under their own value; any other is "other".
CLOSE_CODES = frozenset(
    {"1000", "1001", "1002", "1003", "1006", "1007", "1008", "1009", "1011", "4000"}
)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
_FIRST_BOUND = LATENCY_BUCKETS[0]


def http_endpoint(path: Optional[bytes], method: bytes, rpc_paths: Any) -> str:
    """
    The bounded name of what an HTTP request went to: C{izzati}, C{jsonrpc},
    C{igor}, C{health}, C{playground}, C{bgpy}, C{metrics} or C{other}.
    """
    if path is None:
        return "other"
    if path == b"/":
        return "izzati" if method == b"POST" else "playground"
    first = path.split(b"/", 2)[1]
    if first == b"ws":
        return "igor"
    if first in (b"health", b"metrics", b"playground", b"bgpy"):
        return first.decode("ascii")
    if path.rstrip(b"/").decode("utf-8", "replace") in rpc_paths:
        return "jsonrpc"
    return "other"


class _Counts:
    """
    One counter family as plain numbers: C{values} maps a tuple of label
    values to a count.  Every access event comes from the reactor thread,
    and so does every scrape, so there is no lock; that makes counting a
    dict update, where C{prometheus_client}'s C{Counter} takes a lock and
    looks its child up per call (see C{bench/jsonrpc_bench.py --cpu}).
    """

    def __init__(self, name: str, documentation: str, labels: List[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: Dict[Tuple[Any, ...], float] = {}

    def add(self, key: Tuple[Any, ...], amount: float = 1) -> None:
        """Count C{amount} under the label values C{key}."""
        values = self.values
        values[key] = values.get(key, 0) + amount

    def family(self) -> Metric:
        """The counter family now."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in sorted(self.values.items()):
            family.add_metric([str(v) for v in key], value)
        return family


class _Endpoint:
    """
    The HTTP counters of one endpoint, as plain numbers (see L{_Counts}):
    one object per endpoint, found by the request's path, so that counting
    an answer adds to a few of its attributes instead of building a label
    tuple per family per request.

    The most common answer, a C{200} within the first latency bucket, is
    counted once, in C{quick}, for both its code and its bucket; the
    families add it to both when they are read.

    @ivar name: the endpoint's label value.
    @ivar quick: answers with C{200} within the first latency bucket.
    @ivar ok: the other answers with C{200}.
    @ivar codes: answers with any other code, by code.
    @ivar refused: requests refused from their headers alone, by code.
    @ivar sent: response bytes sent.
    @ivar received: request body bytes received.
    @ivar buckets: the other timed answers, per latency bucket (the last
        one C{+Inf}).
    @ivar seconds: the sum of the latencies of all timed answers.
    """

    __slots__ = (
        "name",
        "quick",
        "ok",
        "codes",
        "refused",
        "sent",
        "received",
        "buckets",
        "seconds",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.quick = 0
        self.ok = 0
        self.codes: Dict[int, int] = {}
        self.refused: Dict[int, int] = {}
        self.sent = 0
        self.received = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0

    def answered(self) -> bool:
        """Whether an answer was counted (not only refusals)."""
        return self.quick > 0 or self.ok > 0 or bool(self.codes)

    def latency(self) -> Optional[Tuple[List[int], List[float]]]:
        """The count per latency bucket and the sum of seconds, L{None}
        before the first timed answer."""
        if not self.quick and not any(self.buckets):
            return None
        buckets = list(self.buckets)
        buckets[0] += self.quick
        return buckets, [self.seconds]


class _HttpFamily:
    """
    One HTTP counter family read off the endpoints' counters: C{values}
    (label values to count, as L{_Counts} has them) is built when read.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: List[str],
        endpoints: Dict[str, _Endpoint],
        read: Any,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self._endpoints = endpoints
        self._read = read

    @property
    def values(self) -> Dict[Tuple[Any, ...], float]:
        """The counts now, by label values."""
        values: Dict[Tuple[Any, ...], float] = {}
        for endpoint, counters in self._endpoints.items():
            self._read(endpoint, counters, values)
        return values

    def family(self) -> Metric:
        """The counter family now."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in sorted(self.values.items()):
            family.add_metric([str(v) for v in key], value)
        return family


def _read_requests(
    endpoint: str, counters: _Endpoint, values: Dict[Tuple[Any, ...], float]
) -> None:
    codes = dict(counters.codes)
    ok = counters.quick + counters.ok
    if ok:
        codes[200] = codes.get(200, 0) + ok
    for code, count in counters.refused.items():
        codes[code] = codes.get(code, 0) + count
    for code, count in codes.items():
        values[(endpoint, code)] = count


def _read_sent(
    endpoint: str, counters: _Endpoint, values: Dict[Tuple[Any, ...], float]
) -> None:
    if counters.answered():
        values[(endpoint,)] = counters.sent


def _read_received(
    endpoint: str, counters: _Endpoint, values: Dict[Tuple[Any, ...], float]
) -> None:
    if counters.received:
        values[(endpoint,)] = counters.received


class _Latency:
    """A histogram per endpoint, read off the endpoints' counters."""

    name = "twistbridge_http_request_duration_seconds"
    documentation = "Seconds from a request's headers to its answer."

    def __init__(self, endpoints: Dict[str, _Endpoint]) -> None:
        self._endpoints = endpoints

    @property
    def values(self) -> Dict[str, Tuple[List[int], List[float]]]:
        """endpoint -> [count per bucket (the last one +Inf), sum of seconds]"""
        values = {}
        for endpoint, counters in self._endpoints.items():
            latency = counters.latency()
            if latency is not None:
                values[endpoint] = latency
        return values

    def family(self) -> Metric:
        """The histogram family now (cumulative buckets, as Prometheus wants)."""
        family = HistogramMetricFamily(
            self.name, self.documentation, labels=["endpoint"]
        )
        for endpoint, (counts, total) in sorted(self.values.items()):
            buckets, running = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), counts):
                running += count
                buckets.append((floatToGoString(bound), running))
            family.add_metric([endpoint], buckets, sum_value=total[0])
        return family


class BridgeMetrics:
    """
    The metrics of one runtime: counters fed by access events, levels read
    at scrape time.

    @ivar registry: the C{prometheus_client} registry to expose.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = CollectorRegistry(auto_describe=True)
        #: endpoint -> its HTTP counters
        self._endpoints: Dict[str, _Endpoint] = {}
        self.http_requests = _HttpFamily(
            "twistbridge_http_requests",
            "HTTP requests answered.",
            ["endpoint", "code"],
            self._endpoints,
            _read_requests,
        )
        self.http_sent = _HttpFamily(
            "twistbridge_http_sent_bytes",
            "HTTP response bytes sent.",
            ["endpoint"],
            self._endpoints,
            _read_sent,
        )
        self.http_received = _HttpFamily(
            "twistbridge_http_received_bytes",
            "HTTP request body bytes received.",
            ["endpoint"],
            self._endpoints,
            _read_received,
        )
        self.http_latency = _Latency(self._endpoints)
        self.refusals = _Counts(
            "twistbridge_refusals",
            "Requests and connections refused, by reason.",
            ["protocol", "reason"],
        )
        self.igor_connections = _Counts(
            "twistbridge_igor_connections",
            "Igor WebSocket connections closed.",
            ["close_code"],
        )
        self.igor_messages = _Counts(
            "twistbridge_igor_messages",
            "Igor messages, counted when their connection closes.",
            ["direction"],
        )
        self.bgpy_messages = _Counts(
            "twistbridge_bgpy_messages", "bgpy messages received.", ["type", "outcome"]
        )
        self.registry.register(_Collector(self))
        self._rpc_paths: FrozenSet[str] = frozenset()
        #: the counters of the paths whose endpoint is known in advance
        self._known: Dict[bytes, _Endpoint] = {}

    def families(self) -> Iterator[Metric]:
        """The counted families now."""
        yield self.http_requests.family()
        yield self.http_sent.family()
        yield self.http_received.family()
        yield self.http_latency.family()
        yield self.refusals.family()
        yield self.igor_connections.family()
        yield self.igor_messages.family()
        yield self.bgpy_messages.family()

    def start(self) -> None:
        """Start counting the access events."""
        self._rpc_paths = frozenset(self.runtime.rpc.paths())
        # The endpoint of the paths known in advance, whatever the method.
        known = [b"/health", b"/metrics", b"/ws", b"/bgpy"]
        for path in self._rpc_paths:
            known += [path.encode("utf-8"), path.encode("utf-8") + b"/"]
        self._known = {
            path: self._counters(http_endpoint(path, b"POST", self._rpc_paths))
            for path in known
            if path != b"/"  # izzati or the playground, by the method
        }
        logs.add_access_hook(self.observe)

    def stop(self) -> None:
        """Stop counting."""
        logs.remove_access_hook(self.observe)

    def observe(self, kind: str, subject: Any, fields: Dict[str, Any]) -> None:
        """Count one access event (see L{twistbridge.logs.add_access_hook})."""
        if kind != "http":
            self._event(kind, fields)
            return
        # An answered HTTP request, on every request's path (see
        # bench/jsonrpc_bench.py --cpu): counted in line, to a few
        # attributes of its endpoint's counters.
        request = subject
        counters = self._known.get(request.path)
        if counters is None:
            endpoint = http_endpoint(
                request.path, request.method or b"", self._rpc_paths
            )
            counters = self._counters(endpoint)
        code = request.code
        counters.sent += request.sentLength or 0
        try:  # a twisted.web Request has neither
            received = request._body_received
            started = request.started
        except AttributeError:
            received = getattr(request, "_body_received", 0)
            started = getattr(request, "started", None)
        if received:
            counters.received += received
        if started is not None:
            seconds = _monotonic() - started
            counters.seconds += seconds
            if seconds > _FIRST_BOUND:
                counters.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            elif code == 200:
                counters.quick += 1  # its code and its bucket at once
                return
            else:
                counters.buckets[0] += 1
        if code == 200:
            counters.ok += 1
            return
        code = code or 0
        codes = counters.codes
        codes[code] = codes.get(code, 0) + 1
        if code >= 400:
            self._refusal(counters.name, code)

    def _event(self, kind: str, fields: Dict[str, Any]) -> None:
        """Count one access event that is not an answered HTTP request."""
        if kind == "bgpy":
            type_ = fields.get("message_type")
            self.bgpy_messages.add(
                (
                    type_ if type_ in BGPY_TYPES else "other",
                    "ok" if fields.get("outcome") == "OK" else "error",
                )
            )
        elif kind == "http_refused":
            path, code = fields["path"], int(fields["code"])
            endpoint = http_endpoint(path, fields["method"], self._rpc_paths)
            refused = self._counters(endpoint).refused
            refused[code] = refused.get(code, 0) + 1
            self._refusal(endpoint, code)
        elif kind == "igor":
            close = str(fields.get("code"))
            self.igor_connections.add((close if close in CLOSE_CODES else "other",))
            self.igor_messages.add(("in",), fields.get("received") or 0)
            self.igor_messages.add(("out",), fields.get("sent") or 0)

    def _counters(self, endpoint: str) -> _Endpoint:
        """The HTTP counters of C{endpoint}."""
        counters = self._endpoints.get(endpoint)
        if counters is None:
            counters = self._endpoints[endpoint] = _Endpoint(endpoint)
        return counters

    def _refusal(self, endpoint: str, code: int) -> None:
        reason = REFUSAL_CODES.get(code)
        if reason == "origin" and endpoint != "igor":
            reason = None
        if reason is not None:
            protocol = endpoint if endpoint in ("izzati", "jsonrpc", "igor") else "http"
            self.refusals.add((protocol, reason))


class _Collector:
    """What is counted, and what is read from the runtime, when Prometheus scrapes."""

    def __init__(self, metrics: BridgeMetrics) -> None:
        self.metrics = metrics
        self.levels = _Levels(metrics.runtime)

    def describe(self) -> List[Metric]:
        """Nothing to describe up front (the families vary with the runtime)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families now."""
        yield from self.metrics.families()
        yield from self.levels.collect()


class _Levels:
    """What is read from the runtime when Prometheus scrapes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def describe(self) -> List[Metric]:
        """Nothing to describe up front (the families vary with the runtime)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The levels now."""
        rt = self.runtime
        yield from _pools(rt.offloader.stats())
        service = rt.built_service()
        if service is not None:
            open_ = GaugeMetricFamily(
                "twistbridge_connections_open",
                "Open connections per listener.",
                labels=["listener"],
            )
            for name, count in service.open_connections().items():
                open_.add_metric([name], count)
            yield open_
            refused = CounterMetricFamily(
                "twistbridge_connections_refused",
                "Connections refused by a listener's connection limits.",
                labels=["listener"],
            )
            for name, count in service.refused_connections().items():
                refused.add_metric([name], count)
            yield refused
        hub = rt.built("igor_hub")
        if hub is not None:
            yield GaugeMetricFamily(
                "twistbridge_igor_clients",
                "Igor clients connected.",
                value=len(hub.clients),
            )
            yield GaugeMetricFamily(
                "twistbridge_igor_sessions",
                "Igor sessions held (connected or in their takeover window).",
                value=len(hub.sessions),
            )
            yield GaugeMetricFamily(
                "twistbridge_igor_streams",
                "Igor streams open.",
                value=sum(len(c.streams) for c in hub.connections),
            )
            yield CounterMetricFamily(
                "twistbridge_igor_broadcasts",
                "Igor process messages sent to every client.",
                value=hub.broadcasts,
            )
        bgpy = rt.built("bgpy")
        if bgpy is not None:
            yield GaugeMetricFamily(
                "twistbridge_bgpy_initialized",
                "1 when the bgpy tasks are initialized.",
                value=1 if bgpy.machine.initialized else 0,
            )
            yield GaugeMetricFamily(
                "twistbridge_bgpy_queue_depth",
                "bgpy tasks waiting to run.",
                value=bgpy.queue_depth(),
            )
        izzati = rt.built("izzati")
        if izzati is not None:
            yield GaugeMetricFamily(
                "twistbridge_upload_disk_bytes",
                "Temporary disk held by uploads in flight.",
                value=izzati.disk.used,
            )


def _pools(stats: Dict[str, Any]) -> Iterator[Metric]:
    """The offload pools' figures (L{twistbridge.offload.Offloader.stats})."""
    levels = {
        "size": "Workers the pool may run.",
        "busy": "Workers running a call.",
        "queued": "Calls waiting for a worker.",
    }
    for key, text in levels.items():
        family = GaugeMetricFamily(f"twistbridge_pool_{key}", text, labels=["pool"])
        for pool in ("threads", "processes"):
            family.add_metric([pool], stats[pool].get(key, 0))
        yield family
    rejected = CounterMetricFamily(
        "twistbridge_pool_rejected", "Calls refused as server busy.", labels=["pool"]
    )
    for pool in ("threads", "processes"):
        rejected.add_metric([pool], stats[pool].get("rejected", 0))
    yield rejected
    processes = stats["processes"]
    yield CounterMetricFamily(
        "twistbridge_process_worker_crashes",
        "Process workers that died mid-call (each replaced).",
        value=processes.get("crashed", 0),
    )
    yield CounterMetricFamily(
        "twistbridge_process_call_timeouts",
        "Process calls past the call timeout (worker replaced).",
        value=processes.get("timed_out", 0),
    )


class MetricsResource(Resource):
    """C{GET /metrics}: the Prometheus text format of one registry."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        Resource.__init__(self)
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        """The metrics now, for C{/metrics}; 404 elsewhere."""
        if request.path.rstrip(b"/") != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found: the metrics are at /metrics\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class MetricsService(Service):
    """Counts the access events while the bridge runs (L{BridgeMetrics})."""

    name = "metrics-counting"  # type: ignore[assignment]  # (Service declares None)

    def __init__(self, metrics: BridgeMetrics) -> None:
        self.metrics = metrics

    def startService(self) -> None:
        """Start counting."""
        Service.startService(self)
        self.metrics.start()

    def stopService(self) -> None:
        """Stop counting."""
        Service.stopService(self)
        self.metrics.stop()


def metrics_site(metrics: BridgeMetrics) -> Site:
    """The site of the C{--metrics-port} listener: C{GET /metrics} only."""
    site = Site(MetricsResource(metrics.registry))
    site.noisy = False
    return site
