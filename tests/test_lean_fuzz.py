"""
Property-based tests of the HTTP channel's lean path (twistbridge._lean):
the same bytes, in memory, to a bridge's site with the lean path and to the
same site without it, must get the same bytes back (Date and Server
blanked) and leave the connection in the same state; and the parser never
raises, whatever it reads.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twistbridge._lean import parse_request
from twistbridge.testing import fuzz_examples
from twistbridge.web import BridgeSite

from .lean_kit import blank, make_bridge

FUZZ = settings(
    max_examples=fuzz_examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def answers(pieces):
    """What a site with the lean path and one without write for C{pieces}
    (one read each), whether each closed the connection, and the exception
    a read raised, if one did (twisted.web's own parser raises on some
    bytes: a C{Content-Type} with a vertical tab, for one)."""
    out = []
    for lean in (True, False):
        bridge, _ = make_bridge()
        site = BridgeSite(bridge.resource(), bridge.settings, reactor=Clock())
        if not lean:
            site._lean_plain = False
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        failed = None
        for piece in pieces:
            if transport.disconnecting:
                break
            try:
                channel.dataReceived(piece)
            except Exception as e:  # the reactor would drop the connection
                failed = type(e)
                break
        out.append((blank(transport.value()), transport.disconnecting, failed))
    return out


def same(pieces):
    lean, plain = answers(pieces)
    assert lean == plain


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)

ids = (
    st.none()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def rpc_bodies(draw):
    """A JSON-RPC body: mostly well-formed calls of the reactor methods."""
    kind = draw(st.sampled_from(["echo", "boom", "fired", "named", "other", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=60))
    message = {"jsonrpc": "2.0", "id": draw(ids)}
    if kind == "named":
        message.update(method="echo", params={"data": draw(json_values)})
    elif kind == "other":
        message.update(
            method=draw(st.sampled_from(["nope", "echo", "conn"])),
            params=draw(st.lists(json_values, max_size=3) | json_values),
        )
        if draw(st.booleans()):
            del message["id"]
        if draw(st.booleans()):
            message = [message]
    elif kind == "boom":
        message.update(method="boom", params=[draw(st.text(max_size=8))])
    else:
        message.update(method=kind, params=[draw(json_values)])
    text = json.dumps(message, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8")


LEAN_NAMES = [
    b"Host",
    b"Content-Type",
    b"Connection",
    b"User-Agent",
    b"Accept",
    b"Accept-Encoding",
    b"Cache-Control",
    b"Origin",
    b"Referer",
    b"X-Requested-With",
]


def spellings(name):
    return st.sampled_from([name, name.lower(), name.upper(), name.swapcase()])


spaces = st.sampled_from(
    [b"", b" ", b"  ", b"\t", b" \t", b"\x0b", b"\x0c", b"\x1c", b"\x85", b"\xa0"]
)


@st.composite
def lengths(draw, n):
    """A Content-Length value for a body of C{n} bytes, mostly right."""
    kind = draw(
        st.sampled_from(["right"] * 4 + ["zeros", "plus", "off", "neg", "huge", "junk"])
    )
    if kind == "right":
        value = b"%d" % n
    elif kind == "zeros":
        value = b"0" * draw(st.integers(1, 12)) + b"%d" % n
    elif kind == "plus":
        value = b"+%d" % n
    elif kind == "off":
        value = b"%d" % max(0, n + draw(st.integers(-5, 5)))
    elif kind == "neg":
        value = b"-%d" % n
    elif kind == "huge":
        value = b"%d" % draw(st.integers(10**8, 10**25))
    else:
        value = draw(st.sampled_from([b"", b"1 2", b"0x10", b"%d," % n, b"\xb2"]))
    return draw(spaces) + value + draw(spaces)


#: what a request of L{requests} may do otherwise than a plain call
AXES = ("host", "length", "extra", "tweak", "method", "path", "version", "line")


@st.composite
def heads(draw, n, axes):
    """Header lines for a body of C{n} bytes, odd on C{axes}."""
    host = b"127.0.0.1"
    if "host" in axes:
        host = draw(st.sampled_from([b"localhost", b"evil.example", b""]))
    length = draw(lengths(n)) if "length" in axes else b" %d" % n
    lines = [
        draw(spellings(b"Host")) + b":" + draw(spaces) + host + draw(spaces),
        draw(spellings(b"Content-Length")) + b":" + length,
    ]
    if "extra" in axes:
        names = st.sampled_from(LEAN_NAMES + [b"X-Trace", b"Expect", b"Cookie"])
        values = st.sampled_from(
            [
                b"close",
                b"keep-alive",
                b"Keep-Alive",
                b"upgrade",
                b"application/json",
                b"text/plain",
                b"application/x-www-form-urlencoded",
                b"*/*",
                b"x y",
                b"",
            ]
        )
    else:
        names = st.sampled_from([b"User-Agent", b"Accept", b"Content-Type"])
        values = st.sampled_from([b"application/json", b"*/*"])
    for name, value in draw(st.lists(st.tuples(names, values), max_size=4)):
        lines.append(draw(spellings(name)) + b":" + draw(spaces) + value)
    lines = draw(st.permutations(lines))
    if "tweak" in axes:
        # an obs-fold line, a bare CR or LF, a line without a colon, a NUL,
        # a space before the colon, a repeated line
        tweak = draw(st.integers(0, 5))
        i = draw(st.integers(0, len(lines) - 1))
        if tweak == 0:
            lines.insert(i + 1, draw(st.sampled_from([b" folded", b"\tfolded"])))
        elif tweak == 1:
            lines[i] += draw(st.sampled_from([b"\r", b"\n", b"\ra", b"\na"]))
        elif tweak == 2:
            lines.insert(i, b"NoColon")
        elif tweak == 3:
            lines[i] += b"\x00"
        elif tweak == 4:
            name, _, value = lines[i].partition(b":")
            lines[i] = name + b" :" + value
        else:
            lines.insert(i, lines[i])
    return lines


request_methods = st.sampled_from([b"GET", b"post", b"PUT", b"POSTX", b"HEAD"])
paths = st.sampled_from(
    [
        b"/api/v2",
        b"/cors",
        b"/rpc/",
        b"/rpc?x=1",
        b"/%72pc",
        b"/a/../rpc",
        b"/./rpc",
        b"//rpc",
        b"/nowhere",
        b"/rpc#f",
        b"*",
        b"/r\xc3\xa9",
    ]
)
versions = st.sampled_from(
    [b"HTTP/1.0", b"HTTP/1.2", b"http/1.1", b"HTTP/2", b"HTTP/1.10", b""]
)


@st.composite
def requests(draw):
    """One request's bytes: a plain call, odd on up to two axes."""
    axes = draw(st.sets(st.sampled_from(AXES), max_size=2))
    body = draw(rpc_bodies())
    line = b"%s %s %s" % (
        draw(request_methods) if "method" in axes else b"POST",
        draw(paths) if "path" in axes else b"/rpc",
        draw(versions) if "version" in axes else b"HTTP/1.1",
    )
    if "line" in axes:
        line = line.replace(b" ", draw(st.sampled_from([b"  ", b"\t"])), 1)
    lines = [line] + draw(heads(len(body), axes))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@st.composite
def plain_requests(draw):
    """A well-formed call of a reactor method, as a client sends it."""
    body = draw(rpc_bodies())
    close = draw(st.sampled_from([b"", b"Connection: close\r\n"]))
    return (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
        % (close, len(body), body)
    )


@FUZZ
@given(plain_requests())
def test_a_well_formed_call_gets_the_same_answer(raw):
    same([raw])


@FUZZ
@given(requests())
def test_any_request_gets_the_same_answer(raw):
    same([raw])


@FUZZ
@given(st.lists(plain_requests() | requests(), min_size=2, max_size=5))
def test_a_pipelined_sequence_gets_the_same_answers(raws):
    same([b"".join(raws)])


@FUZZ
@given(
    st.lists(plain_requests() | requests(), min_size=1, max_size=3),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
)
def test_the_same_bytes_cut_anywhere_get_the_same_answers(cut, raws, points):
    data = b"".join(raws)
    whole = answers([data])
    assert answers(cut(data, points)) == whole
    assert whole[0] == whole[1]


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.binary(max_size=300), st.integers(0, 400))
def test_the_parser_never_raises(data, at):
    parse_request(data, at)
    parse_request(b"POST /rpc HTTP/1.1\r\n" + data, 0)
