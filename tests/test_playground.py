"""
The browser playground at C{GET /} and bgpy's JSON HTTP bridge (C{/bgpy/}).

Pure checks and the resources in memory (DummyRequest), the files as a
wheel ships them, the page over a real socket, and the page in a real
headless Chromium driven by Selenium.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import requests
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from twistbridge import Bridge, playground
from twistbridge.playground import (
    ASSETS,
    HttpError,
    build_assets,
    build_bgpy_resource,
    check_token,
    parse_exec_args,
    read_asset,
    runtime_loader,
)
from twistbridge.testing import BridgeProcess, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")


# -- pure checks --------------------------------------------------------------


def test_check_token():
    assert check_token(None, None) is None
    assert check_token("", "Bearer x") is None
    assert check_token("s3cret", "Bearer s3cret") is None
    assert check_token("s3cret", "bearer  s3cret ") is None
    denied = HttpError(401, "bgpy token required (Authorization: Bearer <token>)")
    assert check_token("s3cret", None) == denied
    assert check_token("s3cret", "Bearer s3cre") == denied
    assert check_token("s3cret", "Basic s3cret") == denied
    assert check_token("s3cret", "Bearer s3cret\u00e9") == denied


def test_parse_exec_args():
    assert parse_exec_args("application/json", b'{"command": "increase"}', 100) == {
        "command": "increase"
    }
    assert parse_exec_args("Application/JSON; charset=utf-8", b"{}", 100) == {}
    assert parse_exec_args("text/plain", b"{}", 100) == HttpError(
        415, "Content-Type must be application/json"
    )
    assert parse_exec_args(None, b"{}", 100).code == 415
    assert parse_exec_args("application/json", b"{}" + b" " * 99, 100) == HttpError(
        413, "body larger than 100 bytes"
    )
    assert parse_exec_args("application/json", b"[1]", 100) == HttpError(
        400, "exec_args must be a JSON object"
    )
    broken = parse_exec_args("application/json", b'{"a": ', 100)
    assert broken.code == 400 and broken.message.startswith("body is not JSON: ")
    assert parse_exec_args("application/json", b"\xff", 100).code == 400


# -- the bgpy resources in memory ---------------------------------------------


class FakeRuntime:
    """The interface of a bridge's bgpy task runtime (bridge.runtime().bgpy)."""

    def __init__(self, state=None, result=None, error=None):
        self._state = state
        self.result = result
        self.error = error
        self.calls = []
        self.pending = None

    def state(self):
        return self._state

    def execute(self, exec_args):
        self.calls.append(exec_args)
        if self.error is not None:
            return defer.fail(self.error)
        if self.result == "later":
            self.pending = defer.Deferred()
            return self.pending
        return defer.succeed(self.result)


def request(path, method=b"GET", body=None, headers=None):
    req = DummyRequest([p.encode() for p in path.lstrip("/").split("/")[1:]])
    req.method = method
    req.path = path.encode()
    req.content = io.BytesIO(body or b"")
    for name, value in (headers or {}).items():
        req.requestHeaders.setRawHeaders(name, [value])
    return req


def render(resource, req):
    """Render through the child lookup, as a Site does; the request finishes."""
    child = resource
    while req.postpath and not child.isLeaf:
        child = child.getChildWithDefault(req.postpath.pop(0), req)
    result = child.render(req)
    if result is not NOT_DONE_YET:
        req.write(result)
        req.finish()
    return req


def answer(req):
    assert req.finished == 1
    assert req.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    return req.responseCode or 200, json.loads(b"".join(req.written))


JSON = {b"Content-Type": b"application/json"}


def bgpy(rt, **settings):
    return build_bgpy_resource(Bridge(**settings).settings, runtime_loader(lambda: rt))


def test_state_without_runtime():
    req = render(bgpy(None), request("/bgpy/state"))
    assert answer(req) == (503, {"error": "bgpy is not available in this server"})


def test_exec_without_runtime():
    req = render(bgpy(None), request("/bgpy/exec", b"POST", b"{}", JSON))
    assert answer(req) == (503, {"error": "bgpy is not available in this server"})


def test_runtime_loader_calls_runtime():
    rt = FakeRuntime()
    assert runtime_loader(lambda: rt)() is rt


def test_runtime_loader_when_runtime_cannot_start():
    def runtime():
        raise SystemExit("bgpy: cannot read the token file")

    assert runtime_loader(runtime)() is None


def test_state():
    rt = FakeRuntime(state={"request_count": 0, "value": 1000})
    req = render(bgpy(rt), request("/bgpy/state"))
    assert answer(req) == (
        200,
        {"initialized": True, "state": {"request_count": 0, "value": 1000}},
    )
    assert req.responseHeaders.getRawHeaders(b"cache-control") == [b"no-store"]


def test_state_uninitialized():
    req = render(bgpy(FakeRuntime(state=None)), request("/bgpy/state"))
    assert answer(req) == (200, {"initialized": False, "state": None})


def test_state_values_json_cannot_hold():
    rt = FakeRuntime(state={"when": Resource})
    req = render(bgpy(rt), request("/bgpy/state"))
    assert answer(req) == (
        200,
        {"initialized": True, "state": {"when": str(Resource)}},
    )


def test_state_post_is_405():
    req = render(
        bgpy(FakeRuntime(state={})), request("/bgpy/state", b"POST", b"{}", JSON)
    )
    assert answer(req) == (405, {"error": "method not allowed"})
    assert req.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]


def test_exec():
    rt = FakeRuntime(state={"value": 1000}, result={"request_count": 1, "value": 1005})
    body = b'{"command": "increase", "value_change": 5}'
    req = render(bgpy(rt), request("/bgpy/exec", b"POST", body, JSON))
    assert answer(req) == (200, {"state": {"request_count": 1, "value": 1005}})
    assert rt.calls == [{"command": "increase", "value_change": 5}]


def test_exec_answers_when_the_task_finishes():
    rt = FakeRuntime(state={"value": 1}, result="later")
    req = render(bgpy(rt), request("/bgpy/exec", b"POST", b'{"command": "x"}', JSON))
    assert req.finished == 0 and req.written == []
    rt.pending.callback({"value": 2})
    assert answer(req) == (200, {"state": {"value": 2}})


def test_exec_client_gone_before_the_task_finishes():
    rt = FakeRuntime(state={"value": 1}, result="later")
    req = render(bgpy(rt), request("/bgpy/exec", b"POST", b"{}", JSON))
    req.processingFailed(Exception("connection lost"))
    rt.pending.callback({"value": 2})
    assert req.written == [] and req.finished == 0


def test_exec_get_is_405():
    req = render(bgpy(FakeRuntime(state={})), request("/bgpy/exec"))
    assert answer(req) == (405, {"error": "method not allowed"})
    assert req.responseHeaders.getRawHeaders(b"allow") == [b"POST"]


def test_exec_before_init_is_409():
    rt = FakeRuntime(state=None)
    req = render(bgpy(rt), request("/bgpy/exec", b"POST", b"{}", JSON))
    assert answer(req) == (409, {"error": "Not initialized."})
    assert rt.calls == []


@pytest.mark.parametrize(
    "body, headers, expected",
    [
        (b"{", JSON, 400),
        (b'"increase"', JSON, 400),
        (b"{}", {b"Content-Type": b"text/plain"}, 415),
        (b"{}", {}, 415),
        (
            b"command=increase",
            {b"Content-Type": b"application/x-www-form-urlencoded"},
            415,
        ),
    ],
)
def test_exec_bad_body(body, headers, expected):
    rt = FakeRuntime(state={"value": 1})
    code, payload = answer(
        render(bgpy(rt), request("/bgpy/exec", b"POST", body, headers))
    )
    assert code == expected and set(payload) == {"error"}
    assert rt.calls == []


def test_exec_too_large_by_content_length():
    rt = FakeRuntime(state={"value": 1})
    headers = {**JSON, b"Content-Length": b"1000"}
    req = render(
        bgpy(rt, max_message_size=100), request("/bgpy/exec", b"POST", b"{}", headers)
    )
    assert answer(req) == (413, {"error": "body larger than 100 bytes"})


def test_exec_too_large_body():
    rt = FakeRuntime(state={"value": 1})
    body = b'{"a": "' + b"x" * 200 + b'"}'
    req = render(
        bgpy(rt, max_message_size=100), request("/bgpy/exec", b"POST", body, JSON)
    )
    assert answer(req) == (413, {"error": "body larger than 100 bytes"})
    assert rt.calls == []


def test_exec_task_error_is_a_message_not_a_traceback():
    rt = FakeRuntime(state={"value": 1}, error=KeyError("value_change"))
    req = render(
        bgpy(rt), request("/bgpy/exec", b"POST", b'{"command": "increase"}', JSON)
    )
    assert answer(req) == (500, {"error": "'value_change'"})


def test_exec_runtime_raising_synchronously():
    class Raising(FakeRuntime):
        def execute(self, exec_args):
            raise RuntimeError("queue closed")

    req = render(bgpy(Raising(state={})), request("/bgpy/exec", b"POST", b"{}", JSON))
    assert answer(req) == (500, {"error": "queue closed"})


@pytest.mark.parametrize("path", ["/bgpy/state", "/bgpy/exec"])
def test_foreign_origin_is_403(path):
    rt = FakeRuntime(state={"value": 1}, result={"value": 2})
    headers = {**JSON, b"Origin": b"http://evil.example"}
    method = b"POST" if path.endswith("exec") else b"GET"
    req = render(bgpy(rt), request(path, method, b"{}", headers))
    assert answer(req) == (403, {"error": "origin not allowed"})
    assert rt.calls == []


def test_configured_origin_is_allowed():
    rt = FakeRuntime(state={"value": 1}, result={"value": 2})
    headers = {**JSON, b"Origin": b"https://app.example"}
    resource = bgpy(rt, igor_allowed_origin=["https://app.example"])
    req = render(resource, request("/bgpy/exec", b"POST", b"{}", headers))
    assert answer(req) == (200, {"state": {"value": 2}})


@pytest.mark.parametrize("path", ["/bgpy/state", "/bgpy/exec"])
def test_token(path):
    rt = FakeRuntime(state={"value": 1}, result={"value": 2})
    resource = bgpy(rt, bgpy_token="s3cret")
    method = b"POST" if path.endswith("exec") else b"GET"
    for given in (None, b"Bearer nope"):
        headers = dict(JSON)
        if given:
            headers[b"Authorization"] = given
        req = render(resource, request(path, method, b"{}", headers))
        code, body = answer(req)
        assert (code, body) == (
            401,
            {"error": "bgpy token required (Authorization: Bearer <token>)"},
        )
        assert req.responseHeaders.getRawHeaders(b"www-authenticate") == [
            b'Bearer realm="bgpy"'
        ]
    headers = {**JSON, b"Authorization": b"Bearer s3cret"}
    code, _ = answer(render(resource, request(path, method, b"{}", headers)))
    assert code == 200


def test_token_file_unreadable(tmp_path):
    rt = FakeRuntime(state={"value": 1})
    resource = bgpy(rt, bgpy_token_file=str(tmp_path / "missing"))
    req = render(resource, request("/bgpy/state"))
    assert answer(req) == (503, {"error": "bgpy token file unreadable"})


@pytest.mark.parametrize("path", ["/bgpy", "/bgpy/", "/bgpy/init", "/bgpy/state/x"])
def test_bgpy_unknown_paths_are_json_404(path):
    req = render(bgpy(FakeRuntime(state={})), request(path, b"POST", b"{}", JSON))
    assert answer(req) == (404, {"error": "not found: /bgpy/ has state and exec"})


def test_mount_leaves_app_paths_alone():
    root = Resource()
    mine = Resource()
    root.putChild(b"bgpy", mine)
    playground.mount(root, Bridge().settings, lambda: None)
    assert root.children[b"bgpy"] is mine
    assert set(root.children) == {b"bgpy", b"playground"}


# -- the page's files ---------------------------------------------------------


def test_assets_served_with_types_and_policy():
    folder = build_assets()
    for name, content_type in ASSETS.items():
        req = render(folder, request(f"/playground/{name}"))
        assert req.responseCode in (None, 200)
        assert b"".join(req.written) == read_asset(name)
        headers = req.responseHeaders
        assert headers.getRawHeaders(b"content-type") == [content_type.encode()]
        assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
        policy = headers.getRawHeaders(b"content-security-policy")[0]
        assert b"default-src 'none'" in policy and b"connect-src 'self'" in policy


def test_no_listing_and_nothing_else_served():
    folder = build_assets()
    for path in (
        "/playground",
        "/playground/",
        "/playground/../playground.py",
        "/playground/nope.js",
    ):
        req = render(folder, request(path))
        assert req.responseCode == 404


def test_page_links_only_its_own_files():
    html = read_asset("index.html").decode()
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sorted(links) == [
        "/playground/app.js",
        "/playground/favicon.svg",
        "/playground/style.css",
    ]
    for name in ASSETS:
        text = read_asset(name).decode()
        # The icon's XML namespace is a name, not a resource.
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(?i)https?://", text), name
    assert not re.search(r"(?i)@import|url\(", read_asset("style.css").decode())
    # The script's only absolute URL is the WebSocket's, on the page's own host.
    script = read_asset("app.js").decode()
    assert sorted(re.findall(r'"(\w+)://"', script)) == ["ws", "wss"]
    assert '"ws://") + location.host + "/ws"' in script


def test_static_files_land_in_the_wheel(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", "test-artifacts"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (wheel,) = (tmp_path / "dist").glob("twistbridge-*.whl")
    with zipfile.ZipFile(wheel) as z:
        for name in ASSETS:
            with open(os.path.join(ROOT, "twistbridge", "static", name), "rb") as f:
                assert z.read(f"twistbridge/static/{name}") == f.read()


# -- over a real socket ---------------------------------------------------------


@pytest.mark.one_worker
def test_page_over_http(demo_server):
    response = requests.get(demo_server.url("/"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.content == read_asset("index.html")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    head = requests.head(demo_server.url("/"), timeout=10)
    assert head.status_code == 200 and head.content == b""
    script = requests.get(demo_server.url("/playground/app.js"), timeout=10)
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert script.content == read_asset("app.js")
    # Revalidation (Cache-Control: no-cache) costs a 304, not the file.
    etag = script.headers["ETag"]
    again = requests.get(
        demo_server.url("/playground/app.js"),
        headers={"If-None-Match": etag},
        timeout=10,
    )
    assert (again.status_code, again.content) == (304, b"")
    changed = requests.get(
        demo_server.url("/playground/app.js"),
        headers={"If-None-Match": '"other"'},
        timeout=10,
    )
    assert (changed.status_code, changed.content) == (200, read_asset("app.js"))
    assert response.headers["ETag"] != etag


@pytest.mark.one_worker
def test_bgpy_bridge_refuses_foreign_origin_over_http(demo_server):
    response = requests.post(
        demo_server.url("/bgpy/exec"),
        json={"command": "increase", "value_change": 1},
        headers={"Origin": "http://evil.example"},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json() == {"error": "origin not allowed"}


@pytest.mark.one_worker
def test_bgpy_bridge_over_http(demo_server):
    before = requests.get(demo_server.url("/bgpy/state"), timeout=10).json()
    assert before["initialized"] is True
    assert set(before["state"]) == {"request_count", "value"}
    response = requests.post(
        demo_server.url("/bgpy/exec"),
        json={"command": "increase", "value_change": 7},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json() == {
        "state": {
            "request_count": before["state"]["request_count"] + 1,
            "value": before["state"]["value"] + 7,
        }
    }
    after = requests.get(demo_server.url("/bgpy/state"), timeout=10).json()
    assert after["state"] == response.json()["state"]


# -- in a real browser ------------------------------------------------------------


def text_of(driver, element_id):
    return driver.find_element("id", element_id).text


def wait_text(driver, element_id, condition, what, timeout=15.0):
    """Wait until condition(text of element_id) holds; return the text."""
    found = []

    def check():
        text = text_of(driver, element_id)
        if condition(text):
            found.append(text)
            return True
        return False

    try:
        wait_for(check, timeout, interval=0.05, what=what)
    except TimeoutError as e:
        raise AssertionError(
            f"{e}; #{element_id} shows {text_of(driver, element_id)!r}"
        ) from None
    return found[0]


def screenshot(driver, name, width):
    """A full-page screenshot at C{width} CSS pixels, saved in test-artifacts/."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver.set_window_size(width, 900)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + 150)  # + the window's chrome
    path = os.path.join(ARTIFACTS, name)
    assert driver.save_screenshot(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return path


def exercise_page(driver, url, folder):
    """Use every part of the page at C{url} as a person would; screenshots."""
    driver.get(url)
    wait_for(
        lambda: driver.find_element("tag name", "body").get_attribute("data-ready"),
        15,
        what="the page's script to start",
    )
    wait_text(driver, "ws-state", lambda t: t == "open", "the WebSocket to open")

    # izzati: the fields and a file; the demo app answers their sizes.
    payload = os.path.join(folder, "payload.bin")
    with open(payload, "wb") as f:
        f.write(bytes(range(256)) * 4 + b"tail")
    driver.find_element("id", "upload-file").send_keys(payload)
    driver.find_element("id", "upload-send").click()
    wait_text(driver, "upload-files", lambda t: t != "", "the upload answer")
    assert text_of(driver, "upload-files") == "payload.bin — 1028 bytes"
    assert json.loads(text_of(driver, "upload-result")) == {
        "status": "ok",
        "text": {"name": "twistbridge", "message": "hello"},
        "files": [{"filename": "payload.bin", "size": 1028}],
    }

    # Igor: the clock ticks (two at least), and echo streams the answer.
    wait_text(driver, "clock-count", lambda t: int(t) >= 2, "two clock ticks")
    assert int(text_of(driver, "clock-value")) >= 2
    box = driver.find_element("id", "echo-input")
    box.clear()
    box.send_keys("hello from Chromium")
    driver.find_element("id", "echo-send").click()
    wait_text(
        driver, "echo-state", lambda t: t.endswith("closed"), "the echo stream to close"
    )
    assert text_of(driver, "echo-result") == '"hello from Chromium"'

    # JSON-RPC: the methods come from rpc.discover; add(2, 3) is 5.
    from selenium.webdriver.support.ui import Select

    def methods():
        options = driver.find_elements("css selector", "#rpc-method option")
        return [o.get_attribute("value") for o in options]

    wait_for(lambda: "add" in methods(), 15, what="the JSON-RPC method list")
    assert {"add", "echo"} <= set(methods())
    Select(driver.find_element("id", "rpc-method")).select_by_value("add")
    # The form is built from rpc.discover: the signature and the summary.
    wait_text(
        driver,
        "rpc-doc",
        lambda t: t == "add(a, b): Return a + b.",
        "add's description",
    )
    Select(driver.find_element("id", "rpc-method")).select_by_value("echo")
    wait_text(
        driver, "rpc-doc", lambda t: t.startswith("echo(data)"), "echo's description"
    )
    Select(driver.find_element("id", "rpc-method")).select_by_value("add")
    params = driver.find_element("id", "rpc-params")
    params.clear()
    params.send_keys("[2, 3]")
    driver.find_element("id", "rpc-call").click()
    wait_text(driver, "rpc-answer", lambda t: t == "5", "add(2, 3) = 5")

    # bgpy: EXEC increase through the HTTP bridge changes the value.
    value = int(wait_text(driver, "bgpy-value", str.isdigit, "the bgpy state"))
    change = driver.find_element("id", "bgpy-change")
    change.clear()
    change.send_keys("25")
    driver.find_element("id", "bgpy-increase").click()
    wait_text(
        driver, "bgpy-value", lambda t: t == str(value + 25), "the value to grow by 25"
    )

    wait_text(driver, "health-status", lambda t: t == "health: ok", "the health strip")
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []

    screenshot(driver, "playground-wide.png", 1280)
    screenshot(driver, "playground-narrow.png", 390)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    driver.set_window_size(1280, 900)


@pytest.mark.long
def test_playground_in_chromium(browser, tmp_path):
    driver = browser
    with BridgeProcess() as server:
        exercise_page(driver, server.url("/"), str(tmp_path))
        # The server restarts on the same port: the page reconnects by itself.
        port = server.port()
        ticks = int(text_of(driver, "clock-count"))
    wait_text(
        driver, "ws-state", lambda t: t == "closed", "the page to see the server gone"
    )
    with BridgeProcess(["--port", f"tcp:{port}:interface=127.0.0.1"]):
        wait_text(
            driver, "ws-state", lambda t: t == "open", "the WebSocket to reconnect", 30
        )
        wait_text(
            driver,
            "clock-count",
            lambda t: int(t) >= ticks + 2,
            "ticks after the restart",
        )
        box = driver.find_element("id", "echo-input")
        box.clear()
        box.send_keys("again")
        driver.find_element("id", "echo-send").click()
        wait_text(
            driver, "echo-result", lambda t: t == '"again"', "echo after the restart"
        )
        wait_text(
            driver, "health-status", lambda t: t == "health: ok", "health after restart"
        )


def test_playground_errors_and_token_in_chromium(browser):
    """A bgpy token, an unknown Igor action, bad JSON-RPC params, a task error."""
    driver = browser
    env = {**os.environ, "BGPY_TOKEN": "tok-3n"}
    with BridgeProcess(env=env) as server:
        driver.get(server.url("/"))
        wait_text(driver, "ws-state", lambda t: t == "open", "the WebSocket to open")

        # bgpy asks for the token: the buttons wait until it is given.
        wait_text(driver, "bgpy-unavailable", lambda t: "token" in t, "the 401")
        assert driver.find_element("id", "bgpy-increase").get_attribute("disabled")
        driver.find_element("id", "bgpy-token").send_keys("tok-3n")
        driver.find_element("id", "bgpy-token-use").click()
        wait_text(driver, "bgpy-value", lambda t: t == "1000", "the state")
        assert not driver.find_element("id", "bgpy-token-row").is_displayed()
        driver.find_element("id", "bgpy-increase").click()
        wait_text(driver, "bgpy-value", lambda t: t == "1010", "EXEC with the token")

        # A task that raises: its message, no traceback.
        driver.find_element("css selector", "#bgpy summary").click()
        args = driver.find_element("id", "bgpy-args")
        args.clear()
        args.send_keys('{"command": "decrease"}')
        driver.find_element("id", "bgpy-exec").click()
        result = wait_text(
            driver, "bgpy-result", lambda t: t.startswith("HTTP 500"), "the task error"
        )
        body = json.loads(result.split("\n", 1)[1])
        assert set(body) == {"error"} and "value_change" in body["error"]
        assert "Traceback" not in result

        # Igor: an unknown action is the server's 400 message.
        action = driver.find_element("id", "echo-action")
        action.clear()
        action.send_keys("no-such-action")
        driver.find_element("id", "echo-send").click()
        state = wait_text(
            driver, "echo-state", lambda t: t.startswith("error"), "the Igor error"
        )
        assert state.startswith("error 400: ") and "no-such-action" in state

        # JSON-RPC: params that do not fit add(a, b) are -32602.
        from selenium.webdriver.support.ui import Select

        wait_for(
            lambda: driver.find_elements("css selector", "#rpc-method option"),
            15,
            what="the JSON-RPC method list",
        )
        Select(driver.find_element("id", "rpc-method")).select_by_value("add")
        params = driver.find_element("id", "rpc-params")
        params.clear()
        params.send_keys("[1]")
        driver.find_element("id", "rpc-call").click()
        wait_text(
            driver,
            "rpc-answer",
            lambda t: t == "error -32602: Invalid params",
            "the JSON-RPC error",
        )
        params.clear()
        params.send_keys("[1,")
        driver.find_element("id", "rpc-call").click()
        wait_text(
            driver,
            "rpc-answer",
            lambda t: t.startswith("params are not JSON: "),
            "the page's own check",
        )


@pytest.mark.one_worker
def test_playground_uploads_without_javascript(
    browser_without_javascript, demo_server, tmp_path
):
    """The upload card is a real multipart form: it works with scripts off."""
    driver = browser_without_javascript
    note = tmp_path / "note.txt"
    note.write_bytes(b"no scripts needed\n")
    driver.get(demo_server.url("/"))
    assert driver.find_element("id", "upload-add-field").is_displayed() is False
    driver.find_element("id", "upload-file").send_keys(str(note))
    driver.find_element("id", "upload-send").click()
    # The answer replaces the page: the JSON body, shown as text.
    wait_for(
        lambda: "upload-form" not in driver.page_source, 10, what="the answer page"
    )
    answer = json.loads(driver.find_element("tag name", "pre").text)
    assert answer == {
        "status": "ok",
        "text": {"name": "twistbridge", "message": "hello"},
        "files": [{"filename": "note.txt", "size": 18}],
    }
