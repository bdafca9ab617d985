"""
The JSON codec of the protocols (L{twistbridge._json}): with orjson and
with the standard library alone (C{FAST} turned off), the same answers.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections import OrderedDict
from typing import Any, Callable, Tuple

import pytest

from twistbridge import _json
from twistbridge.bgpy._jsonlines import (
    Message,
    MessageType,
    encode_json,
    parse_json_line,
)
from twistbridge.igor._core import encode_action, encode_data, parse_message
from twistbridge.jsonrpc._core import Call, Parsed
from twistbridge.jsonrpc._encode import encode_error, encode_result
from twistbridge.jsonrpc._parse import parse

orjson = pytest.importorskip(
    "orjson", reason="orjson (the `fast` extra) is not installed: nothing to compare"
)


class Text(str):
    """A str subclass (orjson leaves those to the standard library)."""


@dataclasses.dataclass
class Point:
    x: int


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Tuple:
    """What C{function} gives: ("ok", value) or ("error", exception type)."""
    try:
        return ("ok", function(*args, **kwargs))
    except (TypeError, ValueError, RecursionError) as e:
        return ("error", type(e))


def both(monkeypatch, function: Callable[..., Any], *args: Any, **kwargs: Any):
    """C{function}'s outcome with orjson, then with the standard library only."""
    fast = outcome(function, *args, **kwargs)
    monkeypatch.setattr(_json, "FAST", False)
    slow = outcome(function, *args, **kwargs)
    monkeypatch.setattr(_json, "FAST", True)
    return fast, slow


def test_orjson_is_used():
    """With orjson installed, the fast path is on."""
    assert _json.FAST is True


# Values whose bytes are the same either way.
SAME_BYTES = [
    "hello",
    "é ☃ \U0001f600",
    '\x00\x1f"\\/\n\t',
    0,
    -(2**63),
    2**64 - 1,
    2**64,  # past 64 bits: the standard library writes it
    -(2**200),
    True,
    None,
    [],
    {},
    [1, "a", [None, False], {"k": [{}]}],
    {"b": 1, "a": 2},  # key order kept
    OrderedDict([("z", 1), ("y", 2)]),
    (1, 2),
    {1: "x", None: "y", False: "z", 2.5: "w"},  # non-str keys
    Text("sub"),
    {"k": Text("v")},
    [1.5, -0.0, 1e300],
]


@pytest.mark.parametrize("value", SAME_BYTES, ids=repr)
@pytest.mark.parametrize("ascii", [True, False])
@pytest.mark.parametrize("allow_nan", [True, False])
def test_dumps_same_bytes(monkeypatch, value, ascii, allow_nan):
    """Both paths write the same bytes, those of json.dumps."""
    fast, slow = both(
        monkeypatch, _json.dumps_bytes, value, ascii=ascii, allow_nan=allow_nan
    )
    expected = json.dumps(
        value, separators=(",", ":"), ensure_ascii=ascii, allow_nan=allow_nan
    ).encode("utf-8")
    assert fast == slow == ("ok", expected)


@pytest.mark.parametrize(
    "value",
    [float("nan"), [1, float("inf")], {"a": -math.inf}],
    ids=repr,
)
def test_dumps_nan(monkeypatch, value):
    """NaN and Infinity: refused when strict, Python's spelling otherwise."""
    assert both(monkeypatch, _json.dumps_bytes, value) == (
        ("error", ValueError),
        ("error", ValueError),
    )
    fast, slow = both(monkeypatch, _json.dumps_bytes, value, allow_nan=True)
    assert fast == slow == ("ok", json.dumps(value, separators=(",", ":")).encode())


def circular() -> list:
    loop: list = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "value, error",
    [
        ({(1, 2): 1}, TypeError),
        (object(), TypeError),
        ({1, 2}, TypeError),
        (Point(1), TypeError),
        (datetime.date(2020, 1, 2), TypeError),
        (circular(), ValueError),
    ],
    ids=["tuple-key", "object", "set", "dataclass", "date", "circular"],
)
def test_dumps_refused_alike(monkeypatch, value, error):
    """What the standard library refuses, both paths refuse alike."""
    assert both(monkeypatch, _json.dumps_bytes, value) == (
        ("error", error),
        ("error", error),
    )


def test_dumps_deep(monkeypatch):
    """Nesting past orjson's limit (254) is the standard library's to write."""
    value: Any = 1
    for _ in range(300):
        value = [value]
    fast, slow = both(monkeypatch, _json.dumps_bytes, value)
    assert fast == slow == ("ok", b"[" * 300 + b"1" + b"]" * 300)


def test_dumps_default(monkeypatch):
    """C{default} is used for what neither path writes."""
    fast, slow = both(
        monkeypatch, _json.dumps_bytes, {"s": frozenset([3])}, default=list
    )
    assert fast == slow == ("ok", b'{"s":[3]}')


def test_dumps_float_exponents(monkeypatch):
    """The one difference in bytes: exponents; the value read back is equal."""
    fast, slow = both(monkeypatch, _json.dumps_bytes, [1e-7, 1e16])
    assert fast == ("ok", b"[1e-7,1e+16]")
    assert slow == ("ok", b"[1e-07,1e+16]")


LOADS = [
    b'{"jsonrpc":"2.0","method":"echo","params":["hello"],"id":1}',
    b'  [1, 2.5, -0, -0.0, 1E5, "\\u00e9\\ud83d\\ude00", null, true] \r\n',
    "é".encode().join([b'"', b'"']),
    b"123456789012345678901234567890",  # past 64 bits: an int
    b"-9223372036854775809",
    b'{"a": 1, "a": 2, "b": 3}',
    b"1e400",  # inf, as the standard library reads it
    b'"\\ud800"',  # a lone surrogate
    b'{"n": "0123456789012345678901"}',  # digits in a string
    b"NaN",
    b"[Infinity]",
    b"",
    b"[1,]",
    b"\xff",
    b"\xef\xbb\xbf{}",
    b'"a\nb"',
    b"01",
    "[1]",
    '"\udc80"',
    b"[" * 1100 + b"]" * 1100,  # past orjson's depth limit (1024)
]


@pytest.mark.parametrize("payload", LOADS, ids=lambda p: repr(p)[:40])
@pytest.mark.parametrize("allow_nan", [True, False])
def test_loads_same(monkeypatch, payload, allow_nan):
    """Both paths read the same values, of the same types, or both refuse."""
    fast, slow = both(monkeypatch, _json.loads, payload, allow_nan=allow_nan)
    assert repr(fast) == repr(slow)
    expected = outcome(reference, payload, allow_nan)
    assert repr(fast) == repr(expected)


def _reject(name: str) -> Any:
    raise ValueError(name)


def reference(payload: Any, allow_nan: bool) -> Any:
    """What the standard library reads: UTF-8 only, constants as asked."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return json.loads(text) if allow_nan else json.loads(text, parse_constant=_reject)


def test_loads_big_int_type(monkeypatch):
    """An integer past 64 bits stays an int, exactly."""
    fast, slow = both(monkeypatch, _json.loads, b"[18446744073709551616]")
    assert fast == slow == ("ok", [18446744073709551616])
    assert type(fast[1][0]) is int


def test_loads_bounded_same(monkeypatch):
    """The bounded decoder's small-document path answers alike."""
    for payload in (b'{"a": [1, 2, {"b": null}]}', b"NaN", b"[99999999999999999999]"):
        fast, slow = both(
            monkeypatch, _json.loads_bounded, payload, parse_constant=_reject
        )
        assert repr(fast) == repr(slow)


# The protocols' answers, byte for byte, either way.


@pytest.mark.parametrize(
    "result",
    ["hello", 7, None, [1, "é", {"k": None}], {"x": [1.5, True]}, 2**70],
    ids=repr,
)
def test_jsonrpc_answers_alike(monkeypatch, result):
    """JSON-RPC results and errors: the same bytes, ASCII."""
    call = Call("echo", [result], 1, False)
    fast, slow = both(monkeypatch, encode_result, call, result)
    assert fast == slow
    assert fast[1].isascii()
    assert json.loads(fast[1]) == {"jsonrpc": "2.0", "result": result, "id": 1}


def test_jsonrpc_nan_result_refused(monkeypatch):
    """A NaN result is not JSON either way (the call answers an internal error)."""
    call = Call("echo", [], 1, False)
    assert both(monkeypatch, encode_result, call, [float("nan")]) == (
        ("error", ValueError),
        ("error", ValueError),
    )


def shape(parsed: Any) -> Any:
    """A parse result as plain, comparable data."""
    if isinstance(parsed, Parsed):
        return (
            parsed.batch,
            [
                (type(item).__name__, [getattr(item, n) for n in item.__slots__])
                for item in parsed.items
            ],
        )
    return parsed


def test_jsonrpc_parse_alike(monkeypatch):
    """Requests parse to the same calls, and bad ones to the same errors."""
    for body in (
        b'{"jsonrpc":"2.0","method":"echo","params":["hello"],"id":1}',
        b'[{"jsonrpc":"2.0","method":"a","id":99999999999999999999}]',
        b'{"jsonrpc":"2.0","method":"echo","params":[NaN],"id":1}',
        b"\xff",
    ):
        fast, slow = both(monkeypatch, lambda b: shape(parse(b)), body)
        assert repr(fast) == repr(slow)
    error = both(monkeypatch, encode_error, parse(b"NaN"), None)
    assert error[0] == error[1]


def test_igor_frames_alike(monkeypatch):
    """Igor frames: the same bytes (NaN written as Igor writes it)."""
    for data in ("hello", {"a": [1, None, float("nan")]}, "é"):
        assert len(set(both(monkeypatch, encode_data, "s1", data))) == 1
    assert len(set(both(monkeypatch, encode_action, 3, "go", [1]))) == 1
    message = b'{"streamId": 1, "action": "echo", "data": [NaN, 123456789012345678901]}'
    fast, slow = both(monkeypatch, parse_message, message)
    assert repr(fast) == repr(slow)


def test_bgpy_lines_alike(monkeypatch):
    """bgpy lines: the same bytes (sets as lists), and the same messages read."""
    message = Message(MessageType.EXEC, {"a": {1, 2}, "b": (3,), "c": "é"})
    fast, slow = both(monkeypatch, encode_json, message)
    assert fast == slow
    line = b'{"type": "EXEC", "args": {"x": 1}}'
    fast, slow = both(monkeypatch, parse_json_line, line)
    assert repr(fast) == repr(slow)
