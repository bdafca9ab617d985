"""Property-based tests of bgpy's framing and decoding (both wire formats)."""

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twistbridge.bgpy._core import (
    BgpyError,
    FrameDecoder,
    Message,
    MessageType,
    frame,
    pickle_message,
)
from twistbridge.bgpy._jsonlines import LineDecoder, parse_json_line
from twistbridge.bgpy._pickle import decode_frame
from twistbridge.testing import fuzz_examples

FUZZ = settings(
    max_examples=fuzz_examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def valid_body(args):
    message = Message(MessageType.EXEC, args)
    return base64.b64encode(pickle_message(message))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_frames_reassemble_whatever_the_cuts(cut, bodies, cuts):
    stream = b"".join(frame(b) for b in bodies)
    decoder = FrameDecoder(max_size=1000)
    out = []
    for piece in cut(stream, cuts):
        out += decoder.feed(piece)
    assert out == bodies
    assert not decoder.pending


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_frame_decoder_never_raises_on_garbage(cut, data, cuts):
    decoder = FrameDecoder(max_size=500)
    out = []
    for piece in cut(data, cuts):
        out += decoder.feed(piece)
    for item in out[:-1]:
        assert isinstance(item, bytes)
    if out and isinstance(out[-1], BgpyError):
        assert decoder.failed and decoder.feed(b"1" * 40) == []


@FUZZ
@given(st.binary(max_size=3000))
def test_decode_frame_never_raises_on_garbage(body):
    result = decode_frame(body, allow_modules=("twistbridge.demo",), authenticated=True)
    assert isinstance(result, (Message, BgpyError))


@FUZZ
@given(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6
    ),
)
def test_mutated_pickles_decode_or_fail_cleanly(args, mutations):
    # (one draw for two properties: unmutated, the message comes back whole)
    result = decode_frame(valid_body(args))
    assert isinstance(result, Message)
    assert result.type is MessageType.EXEC and result.args == args
    raw = bytearray(pickle_message(Message(MessageType.EXEC, args)))
    for position, value in mutations:
        raw[position % len(raw)] = value
    result = decode_frame(base64.b64encode(bytes(raw)), authenticated=False)
    assert isinstance(result, (Message, BgpyError))
    if isinstance(result, Message):
        assert isinstance(result.type, MessageType)
        assert isinstance(result.args, dict)


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_json_lines_never_raise(cut, data, cuts):
    decoder = LineDecoder(max_size=400)
    for piece in cut(data, cuts):
        for item in decoder.feed(piece):
            if isinstance(item, bytes):
                assert isinstance(parse_json_line(item), (Message, BgpyError))
            else:
                assert item.close is True
