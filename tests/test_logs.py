"""
Logs: --log-format json (one object per line, no secrets), the access log,
and reopening the log file on SIGUSR1.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess

import requests
import websocket
from twisted.logger import LogLevel, eventsFromJSONLogFile
from twisted.web.test.requesthelper import DummyRequest

from twistbridge import logs
from twistbridge.testing import BridgeProcess, JsonLinesClient, twistd_path, wait_for

APP = ["--app", "production_app:bridge"]
SECRETS = [
    "production-secret-token-value",  # the app's bgpy token
    "careless-token-value",
    "careless-password-value",
    "query-secret-value",
    "header-secret-value",
]


def test_json_logs_parse_line_by_line_and_hold_no_secrets(apps_env):
    with BridgeProcess([*APP, "--log-format", "json"], env=apps_env) as server:
        assert requests.get(server.url("/health"), timeout=5).status_code == 200
        response = requests.get(
            server.url("/slow?seconds=0&token=query-secret-value"),
            headers={"Authorization": "Bearer header-secret-value"},
            timeout=5,
        )
        assert response.status_code == 200
        assert requests.get(server.url("/careless"), timeout=5).text == "logged"
        wait_for(
            lambda: "/careless" in server.output,
            10,
            what="the access line of /careless",
        )
    lines = server.output.splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(events) > 10
    for secret in SECRETS:
        assert secret not in server.output
    access = [e for e in events if e["log_namespace"] == "twistbridge.access"]
    assert [(e["method"], e["path"], e["code"]) for e in access] == [
        ("GET", "/health", 200),
        ("GET", "/slow", 200),
        ("GET", "/careless", 200),
    ]
    health = access[0]
    assert health["access"] == "http"
    assert health["client"] == "127.0.0.1"
    assert health["protocol"] == "HTTP/1.1"
    assert health["level"] == "info"
    assert health["user_agent"].startswith("python-requests/")
    assert (
        health["log_text"] == f'127.0.0.1 "GET /health HTTP/1.1" 200 {health["length"]}'
    )
    careless = next(e for e in events if e.get("log_text", "").startswith("careless:"))
    assert careless["token"] == "[redacted]"
    assert careless["password"] == "[redacted]"
    assert (
        careless["log_text"]
        == "careless: token [redacted] password [redacted] bgpy ***"
    )
    listening = [
        e["log_text"]
        for e in events
        if e["log_format"] == "{listener} listening on {address}"
    ]
    assert [t.split()[0] for t in listening] == ["http", "igor", "bgpy"]


def test_text_logs_have_one_access_line_per_request(apps_env):
    with BridgeProcess(APP, env=apps_env) as server:
        for _ in range(2):
            assert requests.get(server.url("/health?x=1"), timeout=5).status_code == 200
        wait_for(
            lambda: server.output.count('"GET /health HTTP/1.1" 200') == 2,
            10,
            what="2 lines",
        )
    line = next(x for x in server.output.splitlines() if '"GET /health' in x)
    assert re.search(
        r'\[twistbridge\.access#info\] 127\.0\.0\.1 "GET /health HTTP/1\.1" 200 \d+$',
        line,
    )
    assert "x=1" not in server.output


def test_sigusr1_reopens_the_log_file(tmp_path, apps_env):
    logfile = tmp_path / "bridge.log"
    moved = tmp_path / "bridge.log.1"
    process = subprocess.Popen(
        [
            twistd_path(),
            "-n",
            "--pidfile",
            "",
            "--logfile",
            str(logfile),
            "bridge",
            *APP,
        ]
        + [
            "--port",
            "0",
            "--igor-port",
            "none",
            "--bgpy-port",
            "none",
            "--log-format",
            "json",
        ],
        env=apps_env,
        cwd=str(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        text = wait_for(
            lambda: (
                logfile.exists()
                and "http listening on" in (t := logfile.read_text())
                and t
            ),
            20,
            what="the listener in the log file",
        )
        address = re.search(r"http listening on ([\d.:]+)", text).group(1)
        os.rename(logfile, moved)  # what logrotate does
        process.send_signal(signal.SIGUSR1)
        wait_for(lambda: logfile.exists(), 10, what="the log file to be reopened")
        assert requests.get(f"http://{address}/health", timeout=5).status_code == 200
        wait_for(lambda: '"/health"' in logfile.read_text(), 10, what="the access line")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with open(logfile) as f:
        reopened = [json.loads(line) for line in f]
    texts = [e["log_text"] for e in reopened]
    assert texts[0] == f"log file reopened: {logfile}"
    assert any(t.startswith('127.0.0.1 "GET /health HTTP/1.1" 200') for t in texts)
    assert "shutdown complete" in texts
    old = moved.read_text()
    assert "http listening on" in old
    assert "/health" not in old


def test_access_events_for_igor_connections_and_bgpy_messages(apps_env):
    with BridgeProcess([*APP, "--log-format", "json"], env=apps_env) as server:
        ws = websocket.create_connection(
            f"ws://{server.addresses['http']}/ws", timeout=10
        )
        ws.send(json.dumps({"streamId": "s", "action": "wait", "data": 0}))
        assert json.loads(ws.recv()) == {"streamId": "s", "data": "done"}
        assert json.loads(ws.recv()) == {"streamId": "s", "close": True}
        ws.close()
        bgpy = JsonLinesClient(server.addresses["bgpy"])
        bgpy.send("AUTH", token="wrong-token-value")
        assert bgpy.line()["type"] == "OK"  # the acknowledgement
        assert bgpy.line()["type"] == "ERROR"
        bgpy.close()
        bgpy = JsonLinesClient(server.addresses["bgpy"])
        bgpy.send("AUTH", token="production-secret-token-value")
        assert [bgpy.line()["type"], bgpy.line()["type"]] == ["OK", "OK"]
        bgpy.send("EXEC")
        assert bgpy.line()["type"] == "OK"
        bgpy.close()
        wait_for(
            lambda: (
                server.output.count('"access": "bgpy"') == 3
                and '"access": "igor"' in server.output
            ),
            10,
            what="the access events",
        )
    events = [json.loads(line) for line in server.output.splitlines()]
    (igor,) = [e for e in events if e.get("access") == "igor"]
    assert (igor["path"], igor["code"], igor["received"], igor["sent"]) == (
        "/ws",
        1000,
        1,
        2,
    )
    assert igor["client"] == "127.0.0.1"
    assert igor["client_id"] == 1
    bgpy_events = [e for e in events if e.get("access") == "bgpy"]
    assert [(e["message_type"], e["outcome"], e["wire"]) for e in bgpy_events] == [
        ("AUTH", "ERROR", "json"),
        ("AUTH", "OK", "json"),
        ("EXEC", "OK", "json"),
    ]
    assert all(e["client"].startswith("127.0.0.1:") for e in bgpy_events)
    assert "production-secret-token-value" not in server.output
    assert "wrong-token-value" not in server.output


# in-process -----------------------------------------------------------------


def test_json_observer_redacts_secret_keys_and_reads_back():
    out = io.StringIO()
    observer = logs.json_observer(out)
    observer(
        {
            "log_format": "login {user} with {password}",
            "log_level": LogLevel.warn,
            "log_namespace": "t",
            "log_time": 1.0,
            "user": "ann",
            "password": "hunter2",
            "bgpy_token": "abc",
            "Authorization": "Bearer x",
        }
    )
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert "\x1e" not in line
    assert "hunter2" not in line and "abc" not in line and "Bearer x" not in line
    event = json.loads(line)
    assert (
        event["password"]
        == event["bgpy_token"]
        == event["Authorization"]
        == "[redacted]"
    )
    assert event["log_text"] == "login ann with [redacted]"
    assert event["level"] == "warn"
    # Still Twisted's JSON format: eventsFromJSONLogFile reads it back.
    (back,) = list(eventsFromJSONLogFile(io.StringIO(line), recordSeparator=""))
    assert back["log_level"] is LogLevel.warn
    assert back["user"] == "ann"


def test_scrubbing_file_replaces_every_secret():
    out = io.StringIO()
    f = logs.ScrubbingFile(out, ["s3cret", "", None])
    f.write("a s3cret and s3cret\n")
    f.flush()
    assert out.getvalue() == "a *** and ***\n"


def test_access_http_event_has_no_query_or_body():
    events = []
    saved, logs.access_log.observer = logs.access_log.observer, events.append
    try:
        request = DummyRequest([b"rpc"])
        request.method = b"POST"
        request.uri = b"/rpc?token=zzz"
        request.path = b"/rpc"
        request.clientproto = b"HTTP/1.1"
        request.code = 200
        request.sentLength = 12
        request.requestHeaders.setRawHeaders(b"user-agent", [b"ua/1"])
        logs.access_http(request)
    finally:
        logs.access_log.observer = saved
    (event,) = events
    assert event["access"] == "http"
    assert (event["method"], event["path"], event["code"], event["length"]) == (
        "POST",
        "/rpc",
        200,
        12,
    )
    assert event["user_agent"] == "ua/1"
    assert "zzz" not in repr(event)


def test_access_igor_and_bgpy_events():
    events = []
    saved, logs.access_log.observer = logs.access_log.observer, events.append
    try:
        from twisted.internet.address import IPv4Address

        peer = IPv4Address("TCP", "127.0.0.1", 5555)
        logs.access_igor(peer, "/ws", 1001, 2.5, received=3, sent=4, client_id=1)
        logs.access_bgpy(peer, "EXEC", "OK", wire="json")
    finally:
        logs.access_log.observer = saved
    from twisted.logger import formatEvent

    assert [formatEvent(e) for e in events] == [
        "127.0.0.1 igor /ws closed 1001 after 2.500s (3 in, 4 out)",
        "127.0.0.1 bgpy EXEC OK",
    ]
    assert [e["access"] for e in events] == ["igor", "bgpy"]


def test_access_events_are_what_logger_info_emits():
    """The access log's own emission builds the event Logger.info would."""
    from twisted.logger import Logger

    fast, slow = [], []
    saved, logs.access_log.observer = logs.access_log.observer, fast.append
    try:
        logs.access_bgpy("10.0.0.1", "EXEC", "ERROR", wire="pickle")
    finally:
        logs.access_log.observer = saved
    reference = Logger(namespace="twistbridge.access", observer=slow.append)
    reference.info(
        "{client} bgpy {message_type} {outcome}",
        access="bgpy",
        client="10.0.0.1",
        message_type="EXEC",
        outcome="ERROR",
        wire="pickle",
    )
    (event,), (expected,) = fast, slow
    assert event["log_logger"] is logs.access_log
    for e in (event, expected):
        del e["log_time"], e["log_logger"]
    assert event == expected


def test_text_lines_of_access_events_are_twisteds_own():
    """The fast text path writes exactly what Twisted's formatter writes."""
    from twisted.internet.address import IPv4Address
    from twisted.logger import formatEventAsClassicLogText, formatTime

    events = []
    saved, logs.access_log.observer = logs.access_log.observer, events.append
    try:
        peer = IPv4Address("TCP", "127.0.0.1", 5555)
        logs.access_igor(peer, "/ws\nx", 1000, 0.25, received=1, sent=2)
        logs.access_bgpy(peer, "EXEC", "OK", wire="json")
        logs.access_bgpy("caf\u00e9", "AUTH", "ERROR")
        logs.access_igor(peer, "/ws", None, None)  # does not format plainly
        request = DummyRequest([b"rpc"])
        request.method, request.path, request.clientproto = b"GET", b"/x", b"HTTP/1.0"
        request.code, request.sentLength = 404, 0
        logs.access_http(request)
    finally:
        logs.access_log.observer = saved
    events.append({"log_format": "other {x}", "x": 1, "log_time": 1.5e9})
    events.append(
        {"log_format": "sys", "log_system": "s", "log_namespace": "twistbridge.access"}
    )
    formatter = logs.ClassicTextFormatter()

    def classic(event):
        return formatEventAsClassicLogText(event, lambda t: formatTime(t))

    lines = [formatter(e) for e in events]
    assert lines == [classic(e) for e in events]
    assert lines[0].endswith(
        " [twistbridge.access#info] 127.0.0.1 igor /ws\n\tx closed 1000 after 0.250s (1 in, 2 out)\n"
    )
    assert lines[2].endswith("] caf\u00e9 bgpy AUTH ERROR\n")
    assert "Unable to format event" in lines[3]
    out = io.StringIO()
    logs.text_observer(out)(events[1])
    assert out.getvalue() == lines[1]


def test_level_filtered_stops_access_events_only_when_they_are_dropped():
    """Below the level, access events are not built; at info they are."""
    events = []
    saved, logs.access_log.observer = logs.access_log.observer, events.append
    try:
        (warn_observer,) = logs.level_filtered([events.append], LogLevel.warn)
        logs.access_bgpy("10.0.0.2", "EXEC", "OK")
        assert events == []
        (info_observer,) = logs.level_filtered([events.append], LogLevel.info)
        logs.access_bgpy("10.0.0.2", "EXEC", "OK")
        assert [e["client"] for e in events] == ["10.0.0.2"]
        info_observer(events[0])  # passes the filter at info
        warn_observer(events[0])  # dropped at warn
        assert len(events) == 2
    finally:
        logs.access_log.observer = saved
        logs._access_on = True


def test_configure_logging_leaves_embedded_processes_alone():
    from twistbridge.config import Settings

    assert logs.configure_logging(Settings(log_format="json")) is None
    assert logs.configure_logging(Settings(), object(), {"syslog": True}) is None
