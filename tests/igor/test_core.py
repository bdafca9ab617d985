"""The pure core: validation, encoding, origins, process-call wrapper."""

import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistbridge.igor import flatten
from twistbridge.igor._core import (
    ProcessCall,
    ProtocolError,
    RecordingOutput,
    Request,
    encode_action,
    encode_close,
    encode_data,
    encode_error,
    encode_protocol_error,
    error_text,
    parse_introduction,
    parse_message,
    unknown_action,
)


def test_flatten_nested_and_separator():
    def f():
        pass

    api = {"a": f, "events": {"create": f, "deep": {"x": f}}}
    assert flatten(api) == {"a": f, "events.create": f, "events.deep.x": f}
    assert flatten(api, "/") == {"a": f, "events/create": f, "events/deep/x": f}
    assert set(api) == {"a", "events"}  # the argument is left unchanged


def test_parse_valid_message():
    r = parse_message(b'{"streamId": "s", "action": "echo", "data": {"k": [1]}}')
    assert isinstance(r, Request)
    assert (r.stream_id, r.action, r.data) == ("s", "echo", {"k": [1]})
    r = parse_message('{"streamId": 0, "action": "a"}')
    assert (r.stream_id, r.action, r.data) == (0, "a", None)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "Message is not valid JSON"),
        (b"{", "Message is not valid JSON"),
        (b"\xff", "Message is not valid JSON"),
        (b"[" * 50000, "Message is not valid JSON"),
        (b"1", "Message must be a JSON object"),
        (b'"s"', "Message must be a JSON object"),
        (b"{}", "No streamId specified"),
        (b'{"streamId": true, "action": "a"}', "streamId must be a string or a number"),
        (b'{"streamId": [1], "action": "a"}', "streamId must be a string or a number"),
        (b'{"streamId": "s"}', "No action specified"),
        (b'{"streamId": "s", "action": null}', "No action specified"),
        (b'{"streamId": "s", "action": {}}', "action must be a string"),
    ],
)
def test_parse_errors(payload, message):
    assert parse_message(payload) == ProtocolError(400, message)


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_parse_never_raises(payload):
    result = parse_message(payload)
    assert isinstance(result, (Request, ProtocolError))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_parse_never_raises_on_any_json(value):
    result = parse_message(json.dumps(value))
    assert isinstance(result, (Request, ProtocolError))


def test_unknown_action_wording():
    assert unknown_action("x") == ProtocolError(400, 'No handler for action: "x"')
    long = unknown_action("a" * 5000)
    assert long.message == 'No handler for action: "' + "a" * 100 + '..."'


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"client_id": "alice"}, "alice"),
        ({"client_id": 7}, 7),
        ({}, ProtocolError(400, "No client_id for introduce_self action")),
        (None, ProtocolError(400, "No client_id for introduce_self action")),
        ("alice", ProtocolError(400, "No client_id for introduce_self action")),
        (
            {"client_id": ""},
            ProtocolError(400, "No client_id for introduce_self action"),
        ),
        (
            {"client_id": True},
            ProtocolError(400, "client_id must be a string or an integer"),
        ),
        (
            {"client_id": [1]},
            ProtocolError(400, "client_id must be a string or an integer"),
        ),
    ],
)
def test_parse_introduction(data, expected):
    assert parse_introduction(data) == expected


def test_encoders_exact_bytes():
    assert encode_data("s", {"a": "é"}) == b'{"streamId":"s","data":{"a":"\\u00e9"}}'
    assert encode_error(3, ValueError("bad")) == b'{"streamId":3,"error":"bad"}'
    assert encode_close("s") == b'{"streamId":"s","close":true}'
    assert (
        encode_action("clock", "tick", 1)
        == b'{"streamId":"clock","action":"tick","data":1}'
    )
    assert encode_protocol_error(ProtocolError(400, "No action specified")) == (
        b'{"error":"No action specified","code":400}'
    )
    with pytest.raises(TypeError):
        encode_data("s", object())


def test_error_text_never_empty():
    assert error_text(ValueError("x")) == "ValueError: x"
    assert error_text(KeyError("k")) == "KeyError: 'k'"
    assert error_text(RuntimeError()) == "RuntimeError"


def worker_handler(out, data, **kwargs):
    out.send(data)
    out.send_error("warn")
    if data == "exit":
        raise SystemExit()
    if data == "fail":
        raise ValueError("nope")


def test_process_call_outcomes_and_pickling():
    call = pickle.loads(pickle.dumps(ProcessCall(worker_handler)))
    out = pickle.loads(pickle.dumps(RecordingOutput()))
    assert call(out, "ok", session={}, scope={}, client_id=1) == (
        "ok",
        [("data", "ok"), ("error", "warn")],
        None,
    )
    outcome, messages, detail = ProcessCall(worker_handler)(RecordingOutput(), "fail")
    assert (outcome, messages, detail[0]) == (
        "error",
        [("data", "fail"), ("error", "warn")],
        "ValueError: nope",
    )
    assert "ValueError: nope" in detail[1]
    assert ProcessCall(worker_handler)(RecordingOutput(), "exit")[0] == "exit"
    with pytest.raises(TypeError):
        RecordingOutput().send(object())


def sends_then_returns_a_coroutine(out, data, **kwargs):
    out.send("before")

    async def later():
        return None

    return later()


def test_process_handler_returning_a_coroutine_is_an_error_saying_so():
    outcome, messages, (text, logged) = ProcessCall(sends_then_returns_a_coroutine)(
        RecordingOutput(), None
    )
    reason = (
        "sends_then_returns_a_coroutine returned a coroutine, but a "
        "run_in='process' handler runs in a worker process, which has no "
        "reactor to wait for it: return nothing, or run the handler in the "
        "reactor or the thread pool"
    )
    assert (outcome, messages) == ("error", [("data", "before")])
    assert (text, logged) == (f"TypeError: {reason}", reason)
