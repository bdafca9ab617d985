"""Igor over real sockets with websocket-client: twistd (both listeners) and IgorServer."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import websocket

from twistbridge.testing import wait_for

pytestmark = pytest.mark.one_worker


def test_echo_with_stream_id_and_close(url, connect):
    c = connect(url)
    assert c.call("echo", {"a": [1, "é"]}, stream="abc") == [
        {"streamId": "abc", "data": {"a": [1, "é"]}},
        {"streamId": "abc", "close": True},
    ]


def test_numeric_stream_id(url, connect):
    c = connect(url)
    assert c.call("echo", 5, stream=7) == [
        {"streamId": 7, "data": 5},
        {"streamId": 7, "close": True},
    ]


def test_nested_action_names_are_flattened(url, connect):
    c = connect(url)
    assert c.call("session.set", {"k": 1}) == [
        {"streamId": "s1", "data": ["k"]},
        {"streamId": "s1", "close": True},
    ]


@pytest.mark.parametrize(
    "message, error",
    [
        ("not json", "Message is not valid JSON"),
        ("[1, 2]", "Message must be a JSON object"),
        ('{"action": "echo", "data": 1}', "No streamId specified"),
        ('{"streamId": null, "action": "echo"}', "No streamId specified"),
        (
            '{"streamId": {"a": 1}, "action": "echo"}',
            "streamId must be a string or a number",
        ),
        ('{"streamId": "s1", "data": 1}', "No action specified"),
        ('{"streamId": "s1", "action": 3}', "action must be a string"),
        ('{"streamId": "s1", "action": "nope"}', 'No handler for action: "nope"'),
        (
            '{"streamId": "s1", "action": "introduce_self", "data": {}}',
            "No client_id for introduce_self action",
        ),
        (b"\xff\xfe binary garbage", "Message is not valid JSON"),
        ("[" * 100000, "Message is not valid JSON"),
    ],
)
def test_every_error_message(url, connect, message, error):
    c = connect(url)
    if isinstance(message, bytes):
        c.ws.send_binary(message)
    else:
        c.send(message)
    assert c.recv() == {"error": error, "code": 400}
    # The connection is still good.
    assert c.call("echo", 1)[0] == {"streamId": "s1", "data": 1}


def test_binary_frame_with_json_is_accepted(url, connect):
    c = connect(url)
    c.ws.send_binary(
        json.dumps({"streamId": "b", "action": "echo", "data": 2}).encode()
    )
    assert c.until_close("b") == [
        {"streamId": "b", "data": 2},
        {"streamId": "b", "close": True},
    ]


def test_handler_exception_then_still_serving(url, connect):
    c = connect(url)
    other = connect(url)
    assert c.call("boom", 42) == [
        {"streamId": "s1", "data": "before"},
        {"streamId": "s1", "error": "ValueError: boom: 42"},
        {"streamId": "s1", "close": True},
    ]
    assert c.call("echo", "still here")[0] == {"streamId": "s1", "data": "still here"}
    assert other.call("echo", "me too")[0] == {"streamId": "s1", "data": "me too"}


def test_send_error_keeps_stream_open(url, connect):
    c = connect(url)
    assert c.call("send_error") == [
        {"streamId": "s1", "error": "careful"},
        {"streamId": "s1", "data": "after"},
        {"streamId": "s1", "close": True},
    ]


def test_async_handler_sends_three_messages(url, connect):
    c = connect(url)
    assert c.call("three") == [
        {"streamId": "s1", "data": 0},
        {"streamId": "s1", "data": 1},
        {"streamId": "s1", "data": 2},
        {"streamId": "s1", "close": True},
    ]


def test_deferred_handler_sends_three_messages(twistd_server, connect):
    c = connect(twistd_server.url())
    assert [m.get("data") for m in c.call("deferred_three")] == [0, 1, 2, None]


def test_streams_run_concurrently(url, connect):
    c = connect(url)
    c.request("slow", 0.5, stream="slow")
    assert c.call("echo", "fast", stream="fast")[0] == {
        "streamId": "fast",
        "data": "fast",
    }
    assert c.until_close("slow") == [
        {"streamId": "slow", "data": "slept"},
        {"streamId": "slow", "close": True},
    ]


def test_same_stream_id_twice_runs_in_order(url, connect):
    c = connect(url)
    c.request("slow", 0.2, stream="x")
    c.request("echo", "second", stream="x")
    assert [c.recv() for _ in range(4)] == [
        {"streamId": "x", "data": "slept"},
        {"streamId": "x", "close": True},
        {"streamId": "x", "data": "second"},
        {"streamId": "x", "close": True},
    ]


def test_client_ids_kwargs_and_scope(url, connect):
    a = connect(url)
    b = connect(url)
    id_a = a.call("whoami")[0]["data"]
    id_b = b.call("whoami")[0]["data"]
    assert isinstance(id_a, int) and isinstance(id_b, int) and id_b > id_a
    n = a.call("scope_add", "x")[0]["data"]
    assert b.call("scope_add", "y")[0]["data"] == n + 1


def test_process_broadcast_reaches_every_client(url, connect):
    clients = [connect(url) for _ in range(3)]
    clients[0].call("whoami")  # every client is attached before the broadcast
    for c in clients[1:]:
        c.call("whoami")
    clients[0].request("broadcast", {"n": 1})
    for c in clients:
        note = next(m for m in iter(c.recv, None) if m.get("streamId") == "pusher")
        assert note == {"streamId": "pusher", "action": "note", "data": {"n": 1}}


def test_process_sends_to_one_client_after_introduce_self(url, connect):
    a = connect(url)
    b = connect(url)
    a.request("introduce_self", {"client_id": "alice-direct"})
    assert a.call("whoami")[0]["data"] == "alice-direct"
    b.request("direct", {"to": "alice-direct", "data": "hi"})
    assert b.until_close("s1") == [{"streamId": "s1", "close": True}]
    assert a.recv() == {"streamId": "pusher", "action": "note", "data": "hi"}
    # A thread process sends to one client too (attributes set before start).
    b.request("via_thread", {"to": "alice-direct", "data": 5})
    message = a.recv()
    assert message["streamId"] == "worker" and message["action"] == "from_thread"
    assert message["data"]["pid"] == "worker"
    assert message["data"]["item"] == 5
    assert isinstance(message["data"]["scope"], list)


def test_unknown_client_id_raises_in_process(url, connect):
    b = connect(url)
    assert b.call("direct", {"to": "nobody-here", "data": 1}) == [
        {"streamId": "s1", "error": 'No client with given id exists. Id="nobody-here"'},
        {"streamId": "s1", "close": True},
    ]


def test_introduce_self_taken_name_is_refused(url, connect):
    a = connect(url)
    b = connect(url)
    a.request("introduce_self", {"client_id": "taken-name"})
    a.call("whoami")
    b.request("introduce_self", {"client_id": "taken-name"})
    assert b.recv() == {
        "error": 'Client id "taken-name" is already connected',
        "code": 400,
    }


def test_session_taken_over_on_reconnect(url, connect):
    a = connect(url)
    a.request("introduce_self", {"client_id": "bob-takeover"})
    assert a.call("session.set", {"color": "red"})[0]["data"] == ["color"]
    a.close()
    b = connect(url)
    b.request("introduce_self", {"client_id": "bob-takeover"})
    assert b.call("session.get", "color")[0]["data"] == "red"


def test_session_not_taken_over_after_timeout(compat_server, connect):
    # compat_server keeps sessions 0.5 s (IgorServer.session_delete_timeout);
    # the 10 s default is tested with a clock in test_hub.py.
    url = compat_server.url()
    a = connect(url)
    a.request("introduce_self", {"client_id": "carol-late"})
    a.call("session.set", {"color": "blue"})
    a.close()
    probe = connect(url)
    wait_for(lambda: probe.call("sessions_has", "carol-late")[0]["data"] is False, 10)
    b = connect(url)
    b.request("introduce_self", {"client_id": "carol-late"})
    assert b.call("session.get", "color")[0]["data"] is None


def test_process_handler(twistd_server, connect):
    c = connect(twistd_server.url())
    messages = c.call("in_process", {"x": 1})
    assert isinstance(messages[0]["data"], int)
    assert messages[0]["data"] != twistd_server.process.pid
    assert messages[1:] == [
        {"streamId": "s1", "data": {"x": 1}},
        {"streamId": "s1", "close": True},
    ]
    assert c.call("in_process_boom") == [
        {"streamId": "s1", "data": "partial"},
        {"streamId": "s1", "error": "RuntimeError: worker says no"},
        {"streamId": "s1", "close": True},
    ]


def test_two_clients_same_stream_id_200_by_20(url):
    def run(n):
        ws = websocket.create_connection(url, timeout=30)
        try:
            for i in range(20):
                ws.send(
                    json.dumps({"streamId": "s1", "action": "echo", "data": [n, i]})
                )
                assert json.loads(ws.recv()) == {"streamId": "s1", "data": [n, i]}
                assert json.loads(ws.recv()) == {"streamId": "s1", "close": True}
            return n
        finally:
            ws.close()

    with ThreadPoolExecutor(200) as pool:
        assert sorted(pool.map(run, range(200))) == list(range(200))


def test_one_hub_for_both_twistd_listeners(twistd_server, connect):
    a = connect(twistd_server.url())
    b = connect(twistd_server.url("/ws", name="http"))
    id_a = a.call("whoami")[0]["data"]
    assert b.call("whoami")[0]["data"] == id_a + 1
    b.request("introduce_self", {"client_id": "via-ws"})
    b.call("whoami")
    a.request("direct", {"to": "via-ws", "data": "across"})
    assert b.recv() == {"streamId": "pusher", "action": "note", "data": "across"}


def test_demo_clock_ticks_to_every_client(connect):
    from twistbridge.testing import BridgeProcess

    with BridgeProcess() as server:
        a = connect(server.url("/", scheme="ws", name="igor"))
        b = connect(server.url("/ws", scheme="ws", name="http"))
        ticks_a = [a.recv(), a.recv()]
        assert [m["action"] for m in ticks_a] == ["tick", "tick"]
        assert ticks_a[1]["data"] == ticks_a[0]["data"] + 1
        tick_b = b.recv()
        assert tick_b["streamId"] == "clock" and isinstance(tick_b["data"], int)
        assert a.call("echo", "hi") == [
            {"streamId": "s1", "data": "hi"},
            {"streamId": "s1", "close": True},
        ]


def test_the_readme_program_runs_after_changing_its_import(servers):
    import os

    server = servers.compat()
    server.argv_script = "igor_seed_program.py"
    with server:
        ws = websocket.create_connection(server.url(), timeout=10)
        ticks = []
        while len(ticks) < 2:
            m = json.loads(ws.recv())
            if m.get("streamId") == "counter_process":
                ticks.append(m)
        assert ticks[0]["action"] == "counter_increment"
        assert ticks[1]["data"]["counter"] == ticks[0]["data"]["counter"] + 1

        def call(action, data):
            ws.send(json.dumps({"streamId": action, "action": action, "data": data}))
            got = []
            while True:
                m = json.loads(ws.recv())
                if m.get("streamId") == action:
                    got.append(m)
                    if m.get("close"):
                        return got

        assert call("hello", {"name": "Igor"}) == [
            {"streamId": "hello", "data": "Hello Igor"},
            {"streamId": "hello", "close": True},
        ]
        assert call("events.create", 1)[0] == {
            "streamId": "events.create",
            "data": {"created": 1},
        }
        assert call("shutdown", None) == [{"streamId": "shutdown", "close": True}]
        assert server.process.wait(20) == 0
        assert "BacgroundProcess run" in server.output
        assert os.path.basename(server.process.args[1]) == "igor_seed_program.py"
