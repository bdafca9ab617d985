"""The pure core: parsing, validation, binding, encoding, HTTP rules, state (no sockets)."""

import inspect
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twistbridge.jsonrpc import _core as core
from twistbridge.jsonrpc._dispatch import Binder, PathOptions, new_connection
from twistbridge.jsonrpc._encode import dumps, encode_error, encode_result, join
from twistbridge.jsonrpc._httprules import (
    acceptable_content_type,
    acceptable_raw_content_type,
    content_type_verdicts,
    cookie_arguments,
    cors_headers,
    decode_cookies,
    decode_headers,
    is_form_content_type,
    jsonp_body,
    jsonp_params,
    should_compress,
    valid_callback,
)
from twistbridge.jsonrpc._parse import INLINE_PARSE, parse, parse_large
from twistbridge.jsonrpc._state import Locks, Stats, lock_key

# --- parse / validate ----------------------------------------------------------


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parse_never_raises_on_bytes(body):
    result = parse(body)
    assert isinstance(result, (core.Parsed, core.Error))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_every_json_value_is_a_request_or_an_error(value):
    result = parse(json.dumps(value).encode())
    if isinstance(result, core.Error):
        assert result.code == core.INVALID_REQUEST  # only an empty batch
        assert value == []
        return
    for item in result.items:
        if isinstance(item, core.Call):
            assert isinstance(item.method, str)
            assert item.params is None or isinstance(item.params, (list, dict))
        else:
            assert item.error.code == core.INVALID_REQUEST


def test_notification_versus_null_id():
    call = parse(b'{"jsonrpc": "2.0", "method": "m"}').items[0]
    assert call.notification is True
    call = parse(b'{"jsonrpc": "2.0", "method": "m", "id": null}').items[0]
    assert call.notification is False
    assert call.id is None


def test_legacy_envelopes_only_at_top_level():
    v1 = parse(b'{"method": "m", "params": [], "id": 7}').items[0]
    assert (v1.version, v1.id) == (core.V1, 7)
    pre1 = parse(b'{"method": "m", "params": []}').items[0]
    assert pre1.version == core.PRE1
    batch = parse(b'[{"method": "m", "id": 1}]').items[0]
    assert isinstance(batch, core.Invalid)


def test_batch_cap():
    body = json.dumps([{"jsonrpc": "2.0", "method": "m", "id": i} for i in range(11)])
    error = parse(body.encode(), max_batch_size=10)
    assert error.code == core.INVALID_REQUEST
    assert "11" in error.data
    assert isinstance(parse(body.encode(), max_batch_size=0), core.Parsed)


def summary(parsed):
    if isinstance(parsed, core.Error):
        return parsed
    return parsed.batch, [
        (
            type(i).__name__,
            getattr(i, "method", None),
            getattr(i, "id", None),
            getattr(i, "params", None),
            getattr(i, "error", None),
        )
        for i in parsed.items
    ]


PAD = " " * INLINE_PARSE


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc": "2.0", "method": "m", "params": [1], "id": 1}',
        ' [ {"jsonrpc": "2.0", "method": "m", "id": 1} , 5, {"method": 1} ] ',
        '[{"jsonrpc": "2.0", "method": "m"}]',
        "[]",
        " [ ] ",
        "[1,]",
        "[1 2]",
        "[1",
        "[1] x",
        "[NaN]",
        '["\ud800"]',
        "[" * 5000 + "]" * 5000,
        "",
        "{",
    ],
)
def test_large_bodies_parse_as_small_ones(body):
    # the same answer whether the body is parsed at once or request by request
    assert summary(parse_large(PAD + body + PAD)) == summary(parse(body))


def test_large_body_that_is_not_utf8():
    assert parse((PAD + '"\xff"').encode("latin-1")) == core.parse_error()


def test_large_batch_refused_at_the_first_request_over_the_cap():
    entry = '{"jsonrpc": "2.0", "method": "m", "id": 1}'
    # a body that is broken after the cap is still refused for its size
    body = "[" + ",".join([entry] * 11) + ", this is not JSON"
    error = parse_large(body, max_batch_size=10)
    assert error == core.invalid_request(
        "batch of more than 10 requests is over the limit of 10"
    )
    ten = parse_large("[" + ",".join([entry] * 10) + "]", max_batch_size=10)
    assert len(ten.items) == 10
    unlimited = parse_large("[" + ",".join([entry] * 11) + "]", max_batch_size=0)
    assert len(unlimited.items) == 11


def test_bool_is_not_an_id():
    item = parse(b'{"jsonrpc": "2.0", "method": "m", "id": true}').items[0]
    assert isinstance(item, core.Invalid)


# --- binding -----------------------------------------------------------------


def f_simple(a, b, c=3):
    pass


def f_varargs(a, *rest):
    pass


def f_kwargs(a, **kw):
    pass


def f_kwonly(a, *, b, c=1):
    pass


def f_posonly(a, b=2, /, c=3):
    pass


def f_magic(a, _connection=None):
    pass


FUNCS = [f_simple, f_varargs, f_kwargs, f_kwonly, f_posonly, f_magic]
names = st.sampled_from(["a", "b", "c", "d", "rest", "kw", "_connection"])
params = (
    st.none()
    | st.lists(st.integers(), max_size=5)
    | st.dictionaries(names, st.integers(), max_size=5)
)


@given(st.sampled_from(FUNCS), params)
@settings(max_examples=500, deadline=None)
def test_binder_agrees_with_signature_bind(func, p):
    binder = Binder(func, "_connection")
    sig = inspect.signature(func)
    sig = sig.replace(
        parameters=[x for x in sig.parameters.values() if x.name != "_connection"]
    )
    try:
        if p is None:
            sig.bind()
        elif isinstance(p, list):
            sig.bind(*p)
        else:
            sig.bind(**p)
        expected = True
    except TypeError:
        expected = False
    assert (binder.check(p) is None) == expected


def test_binder_messages():
    binder = Binder(f_simple)
    assert binder.check([1]) == "missing a required argument: 'b'"
    assert binder.check([1, 2, 3, 4]) == "too many positional arguments (4 > 3)"
    assert binder.check({"a": 1, "x": 2}) == "got an unexpected keyword argument 'x'"


def test_magic_is_detected_and_hidden():
    binder = Binder(f_magic, "_connection")
    assert binder.magic == "_connection"
    assert binder.check({"a": 1, "_connection": 2}) is not None
    assert Binder(f_simple, "_connection").magic is None


def test_builtin_without_signature_accepts_anything():
    binder = Binder(dict.fromkeys)
    assert binder.signature is None or binder.check([1]) is None


# --- encoding ----------------------------------------------------------------


def test_encode_versions():
    call = core.Call("m", [], 1, False)
    assert json.loads(encode_result(call, [1])) == {
        "jsonrpc": "2.0",
        "result": [1],
        "id": 1,
    }
    v1 = core.Call("m", [], "x", False, core.V1)
    assert json.loads(encode_result(v1, 2)) == {
        "result": 2,
        "error": None,
        "id": "x",
    }
    pre1 = core.Call("m", [], None, False, core.PRE1)
    assert json.loads(encode_result(pre1, 2)) == [2]
    err = json.loads(encode_error(core.method_error(ValueError("bad")), 1, core.V1))
    assert err["error"]["faultCode"] == -32000
    assert err["error"]["faultString"] == "bad"


@pytest.mark.parametrize("value", [float("nan"), object(), {1j}])
def test_results_that_are_not_json_raise(value):
    with pytest.raises((TypeError, ValueError)):
        encode_result(core.Call("m", [], 1, False), value)


def test_deep_result_raises_value_error():
    deep = []
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(ValueError):
        dumps(deep)


def test_join():
    assert join([None, None], True) is None
    assert join([b"1", None, b"2"], True) == b"[1,2]"
    assert join([b"1"], False) == b"1"


def test_method_error_message():
    assert core.method_error(RuntimeError("x")).to_dict() == {
        "code": -32000,
        "message": "x",
        "data": {"type": "RuntimeError"},
    }
    assert core.method_error(KeyError("name")).to_dict() == {
        "code": -32000,
        "message": "'name'",
        "data": {"type": "KeyError"},
    }
    assert core.method_error(KeyError()).message == "KeyError"


# --- JSONP, CORS, content types, compression ---------------------------------


@pytest.mark.parametrize("name", ["cb", "jQuery123_456", "a.b.c", "$", "x[0]", "_cb$1"])
def test_valid_callbacks(name):
    assert valid_callback(name)


@pytest.mark.parametrize(
    "name", ["", "alert(1)", "a b", "x;y", "1abc", "a.", "<script>", "a" * 200]
)
def test_invalid_callbacks(name):
    assert not valid_callback(name)


def test_jsonp_params():
    callback, params = jsonp_params(
        {b"a": [b"1"], b"b": [b"2", b"3"], b"jsonp": [b"cb"]}
    )
    assert callback == "cb"
    assert params == {"a": "1", "b": ["2", "3"]}
    assert jsonp_body("cb", b"5") == b"cb(5);"
    assert jsonp_body(None, b"5") == b"5"


def test_cors_headers():
    assert cors_headers(False, "http://x") == []
    assert dict(cors_headers(True, None))["Access-Control-Allow-Origin"] == "*"
    custom = dict(cors_headers({"origin": "http://a", "methods": ["POST"]}, None))
    assert custom["Access-Control-Allow-Origin"] == "http://a"
    assert custom["Access-Control-Allow-Methods"] == "POST"
    listed = {"origin": ["http://a", "http://b"]}
    assert (
        dict(cors_headers(listed, "http://b"))["Access-Control-Allow-Origin"]
        == "http://b"
    )
    assert "Access-Control-Allow-Origin" not in dict(cors_headers(listed, "http://c"))


@pytest.mark.parametrize(
    "value, ok",
    [
        (None, True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/vnd.api+json", True),
        ("text/plain", True),
        ("application/xml", False),
        ("multipart/form-data; boundary=x", False),
        ("application/x-www-form-urlencoded", False),
    ],
)
def test_content_types(value, ok):
    assert acceptable_content_type(value) is ok


def test_form_content_when_allowed():
    assert acceptable_content_type("application/x-www-form-urlencoded", True)


def test_raw_content_types_are_judged_once_and_remembered():
    value = b"application/json; charset=utf-8"
    assert acceptable_raw_content_type(value, False) is True
    assert content_type_verdicts[(value, False)] is True
    form = b"application/x-www-form-urlencoded"
    assert acceptable_raw_content_type(form, False) is False
    assert acceptable_raw_content_type(form, True) is True
    assert content_type_verdicts[(form, False)] is False


@pytest.mark.parametrize(
    "value, form",
    [
        (b"Multipart/Form-Data; boundary=x", True),
        (b" application/x-www-form-urlencoded ;charset=utf-8", True),
        (b"application/json", False),
        (b"multipart/mixed", False),
    ],
)
def test_form_content_type(value, form):
    assert is_form_content_type(value) is form


def test_cookie_arguments():
    assert cookie_arguments({"name": "a", "value": "b"}) == {"path": "/"}
    assert cookie_arguments(
        {
            "name": "s",
            "value": "v",
            "path": "/api",
            "maxAge": 10,
            "httponly": True,
            "samesite": "Lax",
            "expires": 0,
            "domain": None,
        }
    ) == {
        "path": "/api",
        "max_age": 10,
        "httpOnly": True,
        "sameSite": "Lax",
        "expires": 0,
    }


@pytest.mark.parametrize("cookie", [{"name": "a"}, {"value": "b"}, ["a", "b"], None])
def test_cookie_arguments_refuse_an_entry_without_name_and_value(cookie):
    assert cookie_arguments(cookie) is None


def test_request_headers_and_cookies_as_text():
    raw = [(b"X-A", [b"1", b"2"]), (b"Host", [b"h\xe9"])]
    assert decode_headers(raw) == {"X-A": "1, 2", "Host": "h\xe9"}
    assert decode_cookies({b"s": b"v\xff"}) == {"s": "v\xff"}
    assert decode_cookies(None) == {}


@pytest.mark.parametrize(
    "accept, length, min_size, forced, result",
    [
        ("gzip", 10, None, None, False),
        ("gzip", 10, None, True, True),
        ("gzip", 2000, 1000, None, True),
        ("gzip", 999, 1000, None, False),
        ("gzip", 2000, 1000, False, False),
        ("deflate", 2000, 1000, None, False),
        ("gzip;q=0", 2000, 1000, True, False),
        ("br, gzip;q=0.5", 2000, 1000, None, True),
        (None, 2000, 1000, True, False),
    ],
)
def test_should_compress(accept, length, min_size, forced, result):
    assert should_compress(accept, length, min_size, forced) is result


# --- options, locks, stats, connection ---------------------------------------


def test_path_options_validation():
    assert PathOptions.from_dict({"cors": True}).cors is True
    with pytest.raises(ValueError, match="unknown JSON-RPC path option"):
        PathOptions.from_dict({"corz": True})
    with pytest.raises(ValueError):
        PathOptions.from_dict({"auth": 5})
    with pytest.raises(ValueError):
        PathOptions.from_dict({"cors": "yes"})


def test_locks():
    locks = Locks()
    assert not locks.active()
    locks.lock(f_simple)
    assert locks.locked(f_simple) and not locks.locked(f_kwargs)
    locks.unlock(f_simple)
    locks.lock()
    assert locks.locked(f_kwargs) and locks.locked(None)
    locks.unlock(f_kwargs, exclusive=True)
    assert not locks.locked(f_kwargs)
    locks.unlock()
    locks.unlock(f_kwargs)
    assert not locks.active()


def test_lock_key_of_bound_methods():
    class A:
        def m(self):
            pass

    assert lock_key(A().m) is A.m


def test_stats():
    stats = Stats()
    stats.record("/rpc", "m", 0.002, True)
    stats.record("/rpc", "m", 0.004, False)
    snap = stats.snapshot(in_ms=True)
    entry = snap["methods"]["/rpc m"]
    assert (entry["count"], entry["errors"]) == (2, 1)
    assert entry["average"] == pytest.approx(3.0)
    assert entry["max"] == pytest.approx(4.0)
    assert stats.snapshot()["methods"]["/rpc m"]["max"] == pytest.approx(0.004)


def test_connection_attribute_access_and_compress_choice():
    conn = new_connection("1.2.3.4", {}, {}, "/rpc", None, False)
    assert conn.ip == "1.2.3.4" and conn["ip"] == "1.2.3.4"
    assert "_compressChoice" not in conn
    conn.allowCompress = True
    assert conn["_compressChoice"] is True
    assert "server" not in conn.snapshot()
    with pytest.raises(AttributeError):
        _ = conn.nothing


def test_large_single_call_of_too_many_containers_is_invalid():
    params = b",".join([b"[]"] * 250_001)
    body = b'{"jsonrpc": "2.0", "method": "m", "params": [' + params + b'], "id": 1}'
    answer = parse(body)
    assert answer.to_dict() == {
        "code": -32600,
        "message": "Invalid Request",
        "data": "request holds more than 250000 arrays and objects",
    }
