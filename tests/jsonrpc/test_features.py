"""flaskJSONRPCServer's features, on `twistd bridge` and on the compatibility class."""

import concurrent.futures
import gzip
import json
import os
import textwrap

import pytest
import requests

from twistbridge.testing import wait_for

from .conftest import ON_THE_SESSION_SERVERS, Client, CompatProcess

pytestmark = ON_THE_SESSION_SERVERS


def call(method, params=None, id=1):
    payload = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        payload["params"] = params
    return payload


# --- where handlers run ----------------------------------------------------


def test_plain_def_runs_in_the_thread_pool(client):
    assert client.call("where").startswith("PoolThread-twistbridge-")


def test_reactor_opt_in_runs_in_the_reactor_thread(client):
    assert client.call("where_reactor") == "reactor"


def test_async_def_and_deferred(client):
    assert client.call("async_double", 21) == 42
    assert client.call("deferred_triple", 5) == 15


def test_process_pool(client):
    pid, value = client.call("pid_plus", 1)
    assert value == 2
    assert pid != client.call("server_pid")


# --- errors ----------------------------------------------------------------


def test_method_exception_is_32000_with_its_text_and_no_traceback(client):
    response, body = client.post("/rpc", call("raises", ["boom"]))
    assert body == {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "boom", "data": {"type": "RuntimeError"}},
        "id": 1,
    }
    assert "Traceback" not in response.text


def test_type_error_inside_a_method_is_not_invalid_params(client):
    response, body = client.post("/rpc", call("raises_type_error"))
    assert body["error"]["code"] == -32000
    assert "len()" in body["error"]["message"]


@pytest.mark.parametrize(
    "params",
    [[1], [1, 2, 3], {"minuend": 1}, {"minuend": 1, "subtrahend": 2, "x": 3}, {"x": 1}],
)
def test_invalid_params_decided_by_the_signature(client, params):
    response, body = client.post("/rpc", call("subtract", params))
    assert body["error"]["code"] == -32602
    assert body["error"]["message"] == "Invalid params"
    assert body["id"] == 1


def test_keyword_only_signature(client):
    assert client.call("kwonly", a=1, b=2) == [1, 2, 3]
    response, body = client.post("/rpc", call("kwonly", [1, 2]))
    assert body["error"]["code"] == -32602


def test_result_that_is_not_json_is_internal_error(client):
    response, body = client.post("/rpc", call("not_json"))
    if type(client.server).__name__ == "CompatProcess":
        # flaskJSONRPCServer's fixJSON writes what it cannot convert as null
        assert body == {"jsonrpc": "2.0", "result": None, "id": 1}
    else:
        assert body["error"]["code"] == -32603


def test_magic_variable_cannot_be_sent_by_clients(client):
    response, body = client.post("/rpc", call("whoami", {"_connection": 1}))
    assert body["error"]["code"] == -32602


# --- dispatchers, aliases, introspection ---------------------------------


def test_aliases(client):
    assert client.call("greet") == "Hello world!"
    assert client.call("helloworld", "hi") == "hi"
    assert client.call("hw", data="named") == "named"


def test_per_path_dispatchers_and_nested_paths(client):
    assert client.call("add", 1, 2, path="/api") == 3
    assert client.call("version", path="/api/v2") == 2
    response, body = client.post("/api", call("subtract", [2, 1]))
    assert body["error"]["code"] == -32601
    response, body = client.post("/nowhere", call("subtract", [2, 1]))
    assert response.status_code == 404


def test_trailing_slash(client):
    assert client.call("add", 1, 1, path="/api/") == 2


def test_list_methods(client):
    methods = client.call("system.listMethods", path="/api")
    assert methods == ["add", "rpc.discover", "system.listMethods", "text"]
    assert "hw" in client.call("system.listMethods")


def test_register_instance_and_default_path_on_compat(compat_server):
    c = Client(compat_server)
    assert c.call("double", 4, path="/inst") == 8
    response, body = c.post("/inst", call("_hidden"))
    assert body["error"]["code"] == -32601
    assert c.call("echo", "root", path="/") == "root"


# --- the magic variable ------------------------------------------------------


def test_connection_ip_headers_cookies(client):
    response, body = client.post(
        "/rpc", call("whoami"), headers={"X-Test": "probe", "Cookie": "a=1; b=two"}
    )
    result = body["result"]
    assert result == {
        "ip": "127.0.0.1",
        "agent": "probe",
        "cookies": {"a": "1", "b": "two"},
        "path": "/rpc",
        "method": "whoami",
        "has_server": True,
    }


def test_cookies_out_and_headers_out(client):
    response, body = client.post("/rpc", call("set_outputs"))
    assert body["result"] == "set"
    assert response.headers["X-Custom"] == "yes"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=abc")
    assert "HttpOnly" in cookie
    assert response.cookies["session"] == "abc"


def test_allow_compress_forces_gzip(client):
    response = client.raw(
        "/rpc", json.dumps(call("big", [200])), headers={"Accept-Encoding": "gzip"}
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.json()["result"] == "x" * 200


def test_no_gzip_when_the_client_does_not_accept_it(client):
    response = client.raw(
        "/rpc", json.dumps(call("big", [200])), headers={"Accept-Encoding": "identity"}
    )
    assert "Content-Encoding" not in response.headers
    assert response.json()["result"] == "x" * 200


def test_gzip_over_compress_min_size(server):
    # /api has compress_min_size=1000 (compressMinSize=1000 on the compat class).
    session = requests.Session()
    url = server.url("/api")
    small = session.post(
        url, json=call("text", [10]), headers={"Accept-Encoding": "gzip"}
    )
    assert "Content-Encoding" not in small.headers
    large = session.post(
        url, json=call("text", [5000]), headers={"Accept-Encoding": "gzip"}
    )
    assert large.headers["Content-Encoding"] == "gzip"
    assert large.json()["result"] == "z" * 5000
    raw = session.post(
        url, json=call("text", [5000]), headers={"Accept-Encoding": "gzip"}, stream=True
    ).raw.read()
    assert json.loads(gzip.decompress(raw))["result"] == "z" * 5000


def test_bridge_paths_do_not_compress_by_size_unless_configured(bridge_server):
    response = requests.post(
        bridge_server.url("/rpc"),
        json=call("big_plain", [100000]),
        headers={"Accept-Encoding": "gzip"},
    )
    assert "Content-Encoding" not in response.headers


# --- CORS ----------------------------------------------------------------


def test_cors_headers_and_preflight(server):
    url = server.url("/api")
    pre = requests.options(
        url,
        headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert "Content-Type" in pre.headers["Access-Control-Allow-Headers"]
    post = requests.post(url, json=call("add", [1, 2]), headers={"Origin": "http://x"})
    assert post.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_off_by_default_on_the_bridge(bridge_server):
    response = requests.post(
        bridge_server.url("/rpc"),
        json=call("echo", [1]),
        headers={"Origin": "http://x"},
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_origin_list(bridge_server):
    url = bridge_server.url("/api/v2")
    ok = requests.options(url, headers={"Origin": "http://localhost:8000"})
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:8000"
    assert ok.headers["Access-Control-Allow-Methods"] == "POST"
    other = requests.options(url, headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


# --- JSONP -----------------------------------------------------------------


def test_jsonp_get(server):
    response = requests.get(
        server.url("/api/add"), params={"a": "2", "b": "3", "jsonp": "cb_1"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/javascript"
    assert response.text == "cb_1(5);"


def test_jsonp_error_and_unknown_method(server):
    response = requests.get(server.url("/api/add"), params={"a": "2", "jsonp": "cb"})
    assert response.text.startswith("cb(")
    inner = json.loads(response.text[3:-2])
    assert inner["error"]["code"] == -32602
    response = requests.get(server.url("/api/nope"), params={"jsonp": "cb"})
    assert json.loads(response.text[3:-2])["error"]["code"] == -32601


def test_jsonp_list_methods(server):
    response = requests.get(
        server.url("/api/system.listMethods"), params={"jsonp": "cb", "_": "123"}
    )
    assert response.text == 'cb(["add","rpc.discover","system.listMethods","text"]);'


def test_jsonp_rejects_unsafe_callback(server):
    response = requests.get(
        server.url("/api/add"), params={"a": 1, "b": 2, "jsonp": "alert(1)//"}
    )
    assert response.status_code == 400


def test_jsonp_off_by_default_on_the_bridge(bridge_server):
    response = requests.get(
        bridge_server.url("/rpc/echo"), params={"data": "x", "jsonp": "cb"}
    )
    assert response.status_code == 403


def test_jsonp_on_by_default_on_compat(compat_server):
    response = requests.get(
        compat_server.url("/rpc/echo"), params={"data": "x", "jsonp": "cb"}
    )
    assert response.text == 'cb("x");'


# --- auth --------------------------------------------------------------------


def test_auth(server):
    url = server.url("/secure")
    denied = requests.post(url, json=call("secret"))
    assert denied.status_code == 403
    assert denied.json()["error"] == {"code": -32001, "message": "Forbidden"}
    allowed = requests.post(
        url, json=call("secret"), headers={"Authorization": "Bearer good"}
    )
    assert allowed.json()["result"] == 42
    assert requests.post(url, json=call("public")).json()["result"] == "open"
    batch = requests.post(url, json=[call("public", id=1), call("secret", id=2)])
    assert batch.status_code == 200
    assert batch.json() == [
        {"jsonrpc": "2.0", "result": "open", "id": 1},
        {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Forbidden"}, "id": 2},
    ]


FORBIDDEN = {"code": -32001, "message": "Forbidden"}


def test_auth_runs_before_method_lookup_and_binding(server):
    url = server.url("/secure")
    probes = [
        call("no_such_method", id=1),  # would be -32601
        call("secret", [1, 2], id=2),  # would be -32602 (secret takes nothing)
        call("system.listMethods", id=3),  # would list the names
    ]
    for probe in probes:
        denied = requests.post(url, json=probe)
        assert denied.status_code == 403
        assert denied.json() == {
            "jsonrpc": "2.0",
            "error": FORBIDDEN,
            "id": probe["id"],
        }
    batch = requests.post(url, json=probes)
    assert batch.status_code == 200
    assert batch.json() == [
        {"jsonrpc": "2.0", "error": FORBIDDEN, "id": i} for i in (1, 2, 3)
    ]
    # an authenticated client gets the real errors
    good = {"Authorization": "Bearer good"}
    answers = requests.post(url, json=probes, headers=good).json()
    assert [a.get("error", {}).get("code") for a in answers] == [-32601, -32602, None]
    assert answers[2]["result"] == [
        "public",
        "rpc.discover",
        "secret",
        "system.listMethods",
    ]


# --- lock / unlock / wait ------------------------------------------------------


def processing(client):
    return client.call("stats", path="/control")["processingDispatcherCount"]


@pytest.mark.parametrize("target", [None, "guarded"])
def test_lock_makes_calls_wait_until_unlock(client, target):
    assert client.call("lock", target, path="/control") == (target is None)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(Client(client.server).call, "guarded")
        # the waiting call, plus the stats call asking
        wait_for(lambda: processing(client) == 2, 10, what="a call waiting on the lock")
        assert not future.done()
        client.call("unlock", target, path="/control")
        assert future.result(10) == "ran"


def test_exclusive_unlock_under_global_lock(client):
    client.call("lock", None, path="/control")
    try:
        client.call("unlock", "guarded", True, path="/control")
        assert client.call("guarded") == "ran"
    finally:
        client.call("unlock", None, path="/control")
        client.call("unlock", "guarded", False, path="/control")


# --- stats and callAsync --------------------------------------------------


def test_stats(client):
    before = client.call("stats", path="/control")["methods"].get(
        "/rpc subtract", {"count": 0}
    )
    for _ in range(3):
        client.call("subtract", 3, 1)
    stats = client.call("stats", True, path="/control")
    entry = stats["methods"]["/rpc subtract"]
    assert entry["count"] == before["count"] + 3
    assert entry["errors"] == 0
    assert stats["inMS"] is True
    assert 0 <= entry["average"] <= entry["max"]
    assert "subtract_average" in stats["speedStats"]


def test_call_async(client):
    assert client.call("call_async", 4) == 40


# --- reload ----------------------------------------------------------------


def test_reload_from_a_script(server, tmp_path):
    c = Client(server)
    script = tmp_path / f"reloaded_{os.getpid()}.py"
    script.write_text(
        textwrap.dedent("""
        def compute():
            return "reloaded"
    """)
    )
    assert c.call("compute") in ("original", "reloaded")
    assert c.call("reload_from", str(script), path="/control") is True
    assert c.call("compute") == "reloaded"
    # a broken script changes nothing (safely=True)
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('no')\n")
    assert c.call("reload_from", str(bad), path="/control") is False
    assert c.call("compute") == "reloaded"


# --- blocking ------------------------------------------------------------------


def run_blocking_check(url_base, control):
    c = Client(control)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(
                requests.post, url_base, json=call("gated", [n], id=n), timeout=20
            )
            for n in range(3)
        ]
        wait_for(lambda: c.call("serial_state", path="/control")["started"] == 1, 10)
        wait_for(lambda: processing(c) == 4, 10, what="three calls in flight (+ stats)")
        assert c.call("serial_state", path="/control")["started"] == 1
        c.call("open_gate", path="/control")
        results = sorted(f.result(20).json()["result"] for f in futures)
    assert results == [0, 1, 2]
    assert c.call("serial_state", path="/control")["max"] == 1


def test_blocking_path_runs_one_call_at_a_time(bridge_server):
    run_blocking_check(bridge_server.url("/serial"), bridge_server)


def test_blocking_compat_server():
    # blocking=True on the compatibility class: one call at a time server-wide.
    server = CompatProcess("blocking").start()
    try:
        url = server.url("/serial")
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            futures = [
                pool.submit(
                    requests.post, url, json=call("slow_probe", id=n), timeout=20
                )
                for n in range(5)
            ]
            seen = [f.result(20).json()["result"] for f in futures]
        assert max(seen) == 1
    finally:
        server.stop()


def test_without_blocking_calls_overlap(compat_server):
    # The same probe on the default (non-blocking) server does see overlap,
    # so the test above can fail.
    url = compat_server.url("/serial")
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        futures = [
            pool.submit(requests.post, url, json=call("slow_probe", id=n), timeout=20)
            for n in range(5)
        ]
        seen = [f.result(20).json()["result"] for f in futures]
    assert max(seen) > 1


# --- start / stop / restart -------------------------------------------------


def test_compat_lifecycle():
    server = CompatProcess("lifecycle")
    server.process = None
    import subprocess
    import sys

    from .conftest import APPS, apps_environ

    result = subprocess.run(
        [sys.executable, os.path.join(APPS, "jsonrpc_compat_app.py"), "lifecycle"],
        capture_output=True,
        text=True,
        env=apps_environ(),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][0]
    out = json.loads(line[len("RESULT ") :])
    ok = {"jsonrpc": "2.0", "result": "hi", "id": 1}
    assert out["started"] == ok
    assert out["stopped"].startswith("refused")
    assert out["restarted_after_start"] == ok
    assert out["restarted"] == ok
    assert out["locked"] is True
    assert out["unlocked"] is False
    assert out["callAsync"] == 5
    assert out["checker"] == [True, "later", None]
    assert out["stats_echo_count"] == 3


def test_notifications_do_not_hold_the_answer(client):
    # A notification whose method has not finished: the 204 comes at once.
    response = client.raw("/rpc", json.dumps({"jsonrpc": "2.0", "method": "parked"}))
    assert response.status_code == 204
    response, body = client.post(
        "/rpc",
        [
            {"jsonrpc": "2.0", "method": "parked"},
            {"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1},
        ],
    )
    assert body == [{"jsonrpc": "2.0", "result": 1, "id": 1}]
    # both notifications are still running, and finish when released
    assert client.call("release_parked", path="/control") == 2
