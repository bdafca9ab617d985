"""
Hostile bodies that used to freeze the reactor: a 16 MB form of `a&a&...`
to izzati's `POST /`, a 16 MB JSON-RPC batch of `[[],[],...]`.  While each is
sent and answered, a prober asks `/health` every 50 ms: the server must keep
answering (no stall of seconds), its memory must not balloon, and the
attacker must get a clear refusal.
"""

import http.client
import json
import threading
import time

import pytest

from twistbridge.testing import BridgeProcess

pytestmark = pytest.mark.one_worker

SIZE = 16 * 1024 * 1024
#: Generous bounds: they catch a stall of seconds or hundreds of MiB, not
#: speed.  (Parsing the batch of empty lists below in the reactor would stall
#: it 2.5 s; a busy machine delays a probe of the test's own by a quarter of
#: a second now and then.)
MAX_LATENCY = 1.0
MAX_RSS_GROWTH = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def server():
    with BridgeProcess() as s:
        yield s


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Prober(threading.Thread):
    """GET /health every 50 ms, noting the slowest answer and the largest RSS."""

    def __init__(self, server):
        threading.Thread.__init__(self, daemon=True)
        self.host, port = server.addresses["http"].rsplit(":", 1)
        self.port = int(port)
        self.pid = server.process.pid
        self.stop = threading.Event()
        self.latencies = []
        self.errors = []
        self.rss_before = rss(self.pid)
        self.rss_max = self.rss_before

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("GET", "/health")
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    self.errors.append(response.status)
            except OSError as e:
                self.errors.append(repr(e))
            self.latencies.append(time.monotonic() - t0)
            self.rss_max = max(self.rss_max, rss(self.pid))
            self.stop.wait(0.05)  # sleep-ok: the probing interval

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(30)


def attack(server, path, content_type, body):
    """POST C{body}; the status code and the decoded answer."""
    host, port = server.addresses["http"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def probed(server, path, content_type, body):
    with Prober(server) as prober:
        # the prober's first answers are in before the attack starts
        deadline = time.monotonic() + 10
        while len(prober.latencies) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # sleep-ok: polling the condition above
        code, answer = attack(server, path, content_type, body)
        seen = len(prober.latencies)
        while len(prober.latencies) < seen + 2 and time.monotonic() < deadline + 30:
            time.sleep(0.01)  # sleep-ok: polling the condition above
    assert prober.errors == []
    assert len(prober.latencies) >= 5
    assert max(prober.latencies) < MAX_LATENCY, max(prober.latencies)
    assert prober.rss_max - prober.rss_before < MAX_RSS_GROWTH, (
        prober.rss_max - prober.rss_before
    )
    return code, answer


def test_form_of_many_fields(server):
    body = (b"a&" * (SIZE // 2))[: SIZE - 1] + b"a"
    code, answer = probed(server, "/", "application/x-www-form-urlencoded", body)
    assert code == 413
    assert answer == {
        "error": "form body has more than 1000 fields (send large data as files "
        "or as JSON)"
    }


def test_form_of_one_huge_field(server):
    body = b"a=" + b"%41" * ((SIZE - 2) // 3)
    code, answer = probed(server, "/", "application/x-www-form-urlencoded", body)
    assert code == 413
    assert answer == {
        "error": "a form field is over 1048576 bytes (send large data as files)"
    }


def test_form_to_jsonrpc_is_not_split(server):
    # Twisted itself would split a form body into request.args in the reactor
    body = (b"a&" * (SIZE // 2))[: SIZE - 1] + b"a"
    code, answer = probed(server, "/rpc", "application/x-www-form-urlencoded", body)
    assert code == 415
    assert answer == {"error": "JSON-RPC bodies are application/json", "code": 415}


def test_batch_of_empty_lists(server):
    body = b"[" + b"[]," * ((SIZE - 4) // 3) + b"[]]"
    code, answer = probed(server, "/rpc", "text/plain", body)
    assert code == 200
    assert answer == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32600,
            "message": "Invalid Request",
            "data": "batch of more than 1000 requests is over the limit of 1000",
        },
        "id": None,
    }


def test_large_json_object_to_izzati(server):
    # a large JSON body is parsed in the thread pool and still called back
    body = json.dumps({"blob": "x" * (SIZE // 2)}).encode()
    code, answer = probed(server, "/", "application/json", body)
    assert code == 200
    assert isinstance(answer, dict)


def test_server_still_answers_rpc(server):
    conn = http.client.HTTPConnection(*server.addresses["http"].rsplit(":", 1))
    conn.request(
        "POST",
        "/rpc",
        json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 7}),
        {"Content-Type": "application/json"},
    )
    assert json.loads(conn.getresponse().read()) == {
        "jsonrpc": "2.0",
        "result": 1,
        "id": 7,
    }


def test_multipart_of_too_many_parts(server):
    part = b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'
    body = part * 5000 + b"--b--\r\n"
    code, answer = probed(server, "/", "multipart/form-data; boundary=b", body)
    assert code == 413
    assert answer == {
        "error": "multipart body over a limit: Maximum segment count exceeded"
    }
