"""
GET /metrics after known traffic, over real sockets with the real clients,
read back with prometheus_client's own parser: exact counts.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from twistbridge.metrics import http_endpoint
from twistbridge.testing import BridgeProcess, free_port, wait_for


def scrape(server):
    """Every sample of GET /metrics as {(name, sorted labels): value}."""
    response = requests.get(server.url("/metrics", name="metrics"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def server(apps_env):
    with BridgeProcess(
        ["--app", "metrics_app:bridge", "--metrics-port", "0", "--threads", "3"],
        env=apps_env,
    ) as server:
        wait_for(lambda: "metrics" in server.addresses, 10, what="the metrics listener")
        yield server


def test_counts_after_known_traffic(server):
    import websocket
    from bgpy import Client
    from izzati import Frontend
    from jsonrpcclient import Ok, parse, request

    before = scrape(server)
    assert before[("twistbridge_pool_size", (("pool", "threads"),))] == 3.0
    assert before[("twistbridge_igor_clients", ())] == 0.0

    for a in range(3):
        body = requests.post(
            server.url("/rpc"), json=request("add", params=[a, 1]), timeout=10
        )
        assert isinstance(parse(body.json()), Ok)
    front = Frontend(server.url("/"))
    assert front.send({"a": "1"}) == {"fields": 1, "files": 0}
    assert front.send({"b": "2"}) == {"fields": 1, "files": 0}
    too_big = requests.post(server.url("/"), data={"x": "y" * 4096}, timeout=10)
    assert too_big.status_code == 413
    foreign = requests.get(
        server.url("/health"), headers={"Host": "evil.example"}, timeout=10
    )
    assert foreign.status_code == 421

    ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=10)
    ws.send(json.dumps({"streamId": "s1", "action": "echo", "data": "hi"}))
    assert json.loads(ws.recv()) == {"streamId": "s1", "data": "hi"}
    assert json.loads(ws.recv()) == {"streamId": "s1", "close": True}
    ws.close()

    client = Client("127.0.0.1", server.port("bgpy"))
    client.execute({"command": "increase", "value_change": 10})
    client.execute({"command": "decrease", "value_change": 5})

    igor_closed = ("twistbridge_igor_connections_total", (("close_code", "1000"),))
    execs = ("twistbridge_bgpy_messages_total", (("outcome", "ok"), ("type", "EXEC")))

    def counted():
        s = scrape(server)
        done = s.get(igor_closed) == 1 and s.get(execs) == 2
        return s if done else None

    after = wait_for(counted, 10, what="the Igor close and the EXECs to be counted")

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("twistbridge_http_requests_total", endpoint="jsonrpc", code="200") == 3
    assert delta("twistbridge_http_requests_total", endpoint="izzati", code="200") == 2
    assert delta("twistbridge_http_requests_total", endpoint="izzati", code="413") == 1
    assert delta("twistbridge_http_requests_total", endpoint="health", code="421") == 1
    assert delta("twistbridge_refusals_total", protocol="izzati", reason="size") == 1
    assert delta("twistbridge_refusals_total", protocol="http", reason="host") == 1
    assert (
        delta("twistbridge_http_request_duration_seconds_count", endpoint="jsonrpc")
        == 3
    )
    assert delta("twistbridge_igor_connections_total", close_code="1000") == 1
    assert delta("twistbridge_igor_messages_total", direction="in") == 1
    # the echo's data and its stream's close
    assert delta("twistbridge_igor_messages_total", direction="out") == 2
    assert after[("twistbridge_igor_clients", ())] == 0.0
    assert delta("twistbridge_bgpy_messages_total", type="EXEC", outcome="ok") == 2
    assert after[("twistbridge_bgpy_initialized", ())] == 1.0


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        (b"/", b"POST", "izzati"),
        (b"/", b"GET", "playground"),
        (b"/ws", b"GET", "igor"),
        (b"/rpc", b"POST", "jsonrpc"),
        (b"/rpc/", b"POST", "jsonrpc"),
        (b"/health", b"GET", "health"),
        (b"/playground/app.js", b"GET", "playground"),
        (b"/anything/the/client/made/up", b"GET", "other"),
        (None, b"GET", "other"),
    ],
)
def test_endpoint_labels_are_bounded(path, method, expected):
    assert http_endpoint(path, method, frozenset({"/rpc"})) == expected


def test_the_bytes_and_latencies_of_jsonrpc_answers_are_counted_exactly(server):
    """Single calls (answered on the lean path when whole in one read) and
    calls twisted.web answers (a batch, a call with a header the lean path
    leaves alone), on one keep-alive connection: every request, request
    byte, answer byte and latency is counted once."""
    import http.client

    calls = [
        (b'{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}', {}),
        (b'{"jsonrpc": "2.0", "method": "add", "params": [30, 4], "id": 2}', {}),
        (b'[{"jsonrpc": "2.0", "method": "add", "params": [5, 6], "id": 3}]', {}),
        (
            b'{"jsonrpc": "2.0", "method": "add", "params": [7, 8], "id": 4}',
            {"X-Probe": "1"},
        ),
        (b'{"jsonrpc": "2.0", "method": "add", "params": [900, 1], "id": 5}', {}),
    ]
    before = scrape(server)
    connection = http.client.HTTPConnection("127.0.0.1", server.port(), timeout=10)
    answers = []
    try:
        for body, extra in calls:
            headers = {"Content-Type": "application/json", **extra}
            connection.request("POST", "/rpc", body=body, headers=headers)
            response = connection.getresponse()
            assert response.status == 200
            answers.append(response.read())
    finally:
        connection.close()
    assert [json.loads(a) for a in answers][:2] == [
        {"jsonrpc": "2.0", "result": 3, "id": 1},
        {"jsonrpc": "2.0", "result": 34, "id": 2},
    ]
    after = scrape(server)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    jsonrpc = {"endpoint": "jsonrpc"}
    assert delta("twistbridge_http_requests_total", code="200", **jsonrpc) == 5
    assert delta("twistbridge_http_received_bytes_total", **jsonrpc) == sum(
        len(body) for body, _ in calls
    )
    assert delta("twistbridge_http_sent_bytes_total", **jsonrpc) == sum(
        len(answer) for answer in answers
    )
    duration = "twistbridge_http_request_duration_seconds"
    assert delta(f"{duration}_count", **jsonrpc) == 5
    assert delta(f"{duration}_bucket", le="+Inf", **jsonrpc) == 5
    buckets = [
        delta(f"{duration}_bucket", le=le, **jsonrpc)
        for le in ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1")
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert 0 < delta(f"{duration}_sum", **jsonrpc) < 5 * 10


def test_the_metrics_listener_serves_only_metrics(server):
    other = requests.get(server.url("/health", name="metrics"), timeout=10)
    assert other.status_code == 404
    assert other.text == "not found: the metrics are at /metrics\n"


def test_metrics_are_off_by_default(demo_server):
    assert requests.get(demo_server.url("/health"), timeout=10).status_code == 200
    assert "metrics" not in demo_server.addresses
    assert "metrics listening" not in demo_server.output


# ---------------------------------------------------------------------------
# docs/operations.rst: its list of metrics, its scrape job and its queries

PAGE = Path(__file__).resolve().parent.parent / "docs" / "operations.rst"


def documented_metrics():
    """The page's table: {metric name: (type, sorted label names)}."""
    rows = re.findall(
        r"^   \* - ``(twistbridge_\w+)``\n     - (\w+)\n     - (.*?)\n     - ",
        PAGE.read_text("utf-8"),
        re.M | re.S,
    )
    assert len(rows) > 20, "the page's table was not found"
    return {
        name: (kind, sorted(set(re.findall(r"``(\w+)``", labels))))
        for name, kind, labels in rows
    }


def page_blocks(language):
    """The sources of the page's C{code-block:: language} blocks."""
    text = PAGE.read_text("utf-8")
    pattern = rf"^\.\. code-block:: {language}\n\n((?:    .*\n|\n)+)"
    return [
        "\n".join(line[4:] for line in block.splitlines()).strip()
        for block in re.findall(pattern, text, re.M)
    ]


def test_the_documented_metrics_are_exactly_the_scraped_ones(server):
    """After traffic of every kind (so that every labelled family has a
    sample), the families of a scrape are the page's table: same names,
    types and label names."""
    import websocket
    from bgpy import Client

    assert requests.post(
        server.url("/rpc"),
        json={"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1},
        timeout=10,
    ).json() == {"jsonrpc": "2.0", "result": 3, "id": 1}
    foreign = requests.get(
        server.url("/health"), headers={"Host": "evil.example"}, timeout=10
    )
    assert foreign.status_code == 421
    ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=10)
    ws.send(json.dumps({"streamId": "s1", "action": "echo", "data": "hi"}))
    assert json.loads(ws.recv()) == {"streamId": "s1", "data": "hi"}
    ws.close()
    Client("127.0.0.1", server.port("bgpy")).execute(
        {"command": "increase", "value_change": 1}
    )

    def families():
        text = requests.get(server.url("/metrics", name="metrics"), timeout=10).text
        found = {}
        for family in text_string_to_metric_families(text):
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = {k for sample in family.samples for k in sample.labels}
            found[name] = (family.type, sorted(labels))
        closed = found.get("twistbridge_igor_connections_total", (None, []))[1]
        return found if closed else None  # the Igor close is counted

    scraped = wait_for(families, 10, what="the Igor connection's close to be counted")
    assert scraped == documented_metrics()


def test_the_scrape_job_targets_the_documented_metrics_port():
    (job,) = yaml.safe_load(page_blocks("yaml")[0])["scrape_configs"]
    assert job["job_name"] == "twistbridge"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9102"]}]
    assert "twistd -n bridge --metrics-port 9102" in page_blocks("shell")
    assert "Bridge(metrics_port=9102)" in page_blocks("python")[0]


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing (Debian's prometheus; make test installs it when root)",
)


@needs_promtool
def test_promtool_accepts_the_scrape_job(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(page_blocks("yaml")[0] + "\n")
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_query_of_the_page(tmp_path):
    queries = page_blocks("promql")
    assert len(queries) == 6
    rules = {
        "groups": [
            {
                "name": "operations-page",
                "rules": [
                    {"record": f"page:query_{i}", "expr": query}
                    for i, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout + result.stderr


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is missing (Debian's prometheus; make test installs it when root)",
)
def test_prometheus_scrapes_the_bridge_with_the_page_job(server, tmp_path):
    """A real Prometheus, with the page's job (its target the test server's
    metrics port, its interval 1 s), scrapes the bridge; every query of the
    page evaluates, and the request rate shows the JSON-RPC calls."""
    for a in range(3):
        requests.post(
            server.url("/rpc"),
            json={"jsonrpc": "2.0", "method": "add", "params": [a, 1], "id": a},
            timeout=10,
        )
    job = page_blocks("yaml")[0]
    job = job.replace("127.0.0.1:9102", server.addresses["metrics"])
    job = job.replace("scrape_interval: 15s", "scrape_interval: 1s")
    config = tmp_path / "prometheus.yml"
    config.write_text(job + "\n")
    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def query(expr):
        try:
            response = requests.get(
                f"http://127.0.0.1:{port}/api/v1/query",
                params={"query": expr},
                timeout=5,
            )
        except requests.ConnectionError:
            return None  # not listening yet
        if response.status_code == 503:
            return None  # listening, still starting
        answer = response.json()
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    try:
        up = wait_for(lambda: query('up{job="twistbridge"}'), 30, what="a first scrape")
        assert up[0]["value"][1] == "1"
        # rate() needs two scrapes of the series
        rate_query = page_blocks("promql")[0]
        rates = wait_for(lambda: query(rate_query), 30, what="a request rate")
        assert {r["metric"]["endpoint"] for r in rates} == {"jsonrpc"}
        for expr in page_blocks("promql"):
            assert query(expr) is not None, expr
    finally:
        process.terminate()
        process.wait(30)
