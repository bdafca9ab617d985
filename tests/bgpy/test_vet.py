"""
The pickle vetter: every opcode of the pickle machine is either accepted
(and the pickle then decodes to a Message or a clean error, within the
memory bound) or refused before any unpickler runs; the known attacks are
refused.
"""

import base64
import pickle
import pickletools
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twistbridge.bgpy._core import BgpyError, Message, MessageType, pickle_message
from twistbridge.bgpy._pickle import decode_frame, loads_message
from twistbridge.bgpy._vet import MAX_DEPTH, MEMORY_BASE, MEMORY_FACTOR, vet
from twistbridge.testing import fuzz_examples

FUZZ = settings(
    max_examples=fuzz_examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ALLOWED = frozenset({"bgpy_tasks"})


def u4(n):
    return struct.pack("<I", n)


def u8(n):
    return struct.pack("<Q", n)


def deep_tuple_key(depth=180_000):
    """A dict whose key is a tuple nested `depth` deep (CPython's hash recurses)."""
    return b"\x80\x04}" + b")" + b"\x85" * depth + b"Ns."


MEMO_30M = b"\x80\x04Nr" + u4(30_000_000) + b"."
MEMO_MAX = b"\x80\x04Nr" + u4(2**32 - 1) + b"."

M = b"\x8c\x11bgpy.core.message\x8c\x07Message\x93"
MT = b"cbgpy.core.message\nMessageType\n"

# One pickle per opcode that uses it as the pickler would (after PROTO 5),
# or None for the opcodes that are always refused.
EXAMPLES = {
    "INT": b"I42\n.",
    "BININT": b"J" + struct.pack("<i", -7) + b".",
    "BININT1": b"K\x01.",
    "BININT2": b"M\x01\x02.",
    "LONG": b"L42L\n.",
    "LONG1": b"\x8a\x01\x05.",
    "LONG4": b"\x8b\x01\x00\x00\x00\x05.",
    "STRING": b"S'ab'\n.",
    "BINSTRING": b"T\x02\x00\x00\x00ab.",
    "SHORT_BINSTRING": b"U\x02ab.",
    "BINBYTES": b"B\x02\x00\x00\x00ab.",
    "SHORT_BINBYTES": b"C\x02ab.",
    "BINBYTES8": b"\x8e" + u8(2) + b"ab.",
    "BYTEARRAY8": b"\x96" + u8(2) + b"ab.",
    "NEXT_BUFFER": None,
    "READONLY_BUFFER": None,
    "NONE": b"N.",
    "NEWTRUE": b"\x88.",
    "NEWFALSE": b"\x89.",
    "UNICODE": b"Vab\n.",
    "SHORT_BINUNICODE": b"\x8c\x02ab.",
    "BINUNICODE": b"X\x02\x00\x00\x00ab.",
    "BINUNICODE8": b"\x8d" + u8(2) + b"ab.",
    "FLOAT": b"F1.5\n.",
    "BINFLOAT": b"G" + struct.pack(">d", 1.5) + b".",
    "EMPTY_LIST": b"].",
    "APPEND": b"]Na.",
    "APPENDS": b"](NNe.",
    "LIST": b"(Nl.",
    "EMPTY_TUPLE": b").",
    "TUPLE": b"(Nt.",
    "TUPLE1": b"N\x85.",
    "TUPLE2": b"NN\x86.",
    "TUPLE3": b"NNN\x87.",
    "EMPTY_DICT": b"}.",
    "DICT": b"(NNd.",
    "SETITEM": b"}NNs.",
    "SETITEMS": b"}(NNu.",
    "EMPTY_SET": b"\x8f.",
    "ADDITEMS": b"\x8f(N\x90.",
    "FROZENSET": b"(N\x91.",
    "POP": b"NN0.",
    "DUP": None,
    "MARK": b"(Nt.",
    "POP_MARK": b"N(N1.",
    "GET": b"Np0\n0g0\n.",
    "BINGET": b"Nq\x000h\x00.",
    "LONG_BINGET": b"Nr\x00\x00\x00\x000j\x00\x00\x00\x00.",
    "PUT": b"Np0\n.",
    "BINPUT": b"Nq\x00.",
    "LONG_BINPUT": b"Nr\x00\x00\x00\x00.",
    "MEMOIZE": b"N\x94.",
    "EXT1": None,
    "EXT2": None,
    "EXT4": None,
    "GLOBAL": MT + b".",
    "STACK_GLOBAL": M + b".",
    "REDUCE": MT + b"K\x03\x85R.",
    "BUILD": M + b")\x81N}\x8c\x04type" + MT + b"K\x01\x85Rs\x8c\x04args}s\x86b.",
    "INST": None,
    "OBJ": None,
    "NEWOBJ": M + b")\x81.",
    "NEWOBJ_EX": None,
    "PROTO": b"N.",
    "STOP": b"N.",
    "FRAME": b"\x95" + u8(2) + b"N.",
    "PERSID": None,
    "BINPERSID": None,
}

REFUSED = {
    "NEXT_BUFFER": b"\x97.",
    "READONLY_BUFFER": b"N\x98.",
    "DUP": b"N2.",
    "EXT1": b"\x82\x01.",
    "EXT2": b"\x83\x01\x00.",
    "EXT4": b"\x84\x01\x00\x00\x00.",
    "INST": b"(ibuiltins\nobject\n.",
    "OBJ": b"(" + MT + b"o.",
    "NEWOBJ_EX": M + b")}\x92.",
    "PERSID": b"P0\n.",
    "BINPERSID": b"N\x51.",
}


def test_every_opcode_has_an_example():
    assert set(EXAMPLES) == {op.name for op in pickletools.opcodes}


def within_memory_bound(payload):
    """loads_message(payload) and its peak allocation, traced."""
    tracemalloc.start()
    try:
        result = loads_message(payload, ALLOWED, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_FACTOR * len(payload) + MEMORY_BASE
    return result


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_opcode_is_accepted_or_refused(name):
    example = EXAMPLES[name]
    if example is None:
        payload = b"\x80\x05" + REFUSED[name]
        problem = vet(payload)
        assert problem is not None and name in problem
        assert loads_message(payload, ALLOWED, True) == BgpyError(
            f"Invalid message: {problem}.", True
        )
        return
    payload = b"\x80\x05" + example
    assert vet(payload) is None
    result = within_memory_bound(payload)
    if name == "BUILD":
        assert result == Message(MessageType.EXEC, {})
    else:  # it unpickled: the object is just not a Message
        assert result == BgpyError(
            "Invalid message: not a bgpy Message with a dict of args.", True
        )


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_what_bgpy_sends_is_accepted(protocol):
    import bgpy_tasks
    from bgpy.core.message import Message as BgpyMessage
    from bgpy.core.message import MessageType as BgpyType

    args = {
        "init_task": bgpy_tasks.init_task,
        "exec_task": bgpy_tasks.exec_task,
        "exit_task": bgpy_tasks.exit_task,
        "nested": [1, -2, 2**70, 1.5, None, True, "é", (1, (2,)), {"k": [[]]}],
        "await_response": True,
    }
    if protocol >= 4:  # (before 4, bytes and sets are globals: refused)
        args.update(b=b"\x00", s={3}, frozen=frozenset({"a"}))
    if protocol == 5:
        args.update(ba=bytearray(b"x"))
    payload = pickle.dumps(BgpyMessage(BgpyType.INIT, args), protocol=protocol)
    assert vet(payload) is None
    assert loads_message(payload, ALLOWED, True) == Message(MessageType.INIT, args)


def test_the_deep_tuple_dict_key_is_refused():
    payload = deep_tuple_key()
    assert len(payload) == 180_007
    # The 100th TUPLE1 would make a tuple 101 deep.
    problem = f"TUPLE1 at byte {3 + MAX_DEPTH}: nesting deeper than {MAX_DEPTH}"
    assert vet(payload) == problem
    assert loads_message(payload) == BgpyError(f"Invalid message: {problem}.", True)


def test_nesting_up_to_the_bound_is_accepted():
    # the dict counts: ) is 1 deep, each TUPLE1 adds 1, the dict 1 more
    ok = b"\x80\x04}" + b")" + b"\x85" * (MAX_DEPTH - 2) + b"Ns."
    assert vet(ok) is None
    assert vet(b"\x80\x04}" + b")" + b"\x85" * (MAX_DEPTH - 1) + b"Ns.") == (
        f"SETITEM at byte {4 + MAX_DEPTH}: nesting deeper than {MAX_DEPTH}"
    )
    # marks nest no deeper either
    assert vet(b"(" * (MAX_DEPTH + 1)) == (
        f"MARK at byte {MAX_DEPTH}: marks nested deeper than {MAX_DEPTH}"
    )


@pytest.mark.parametrize(
    "payload, problem",
    [
        (MEMO_30M, "BINPUT at byte 3: memo index 30000000 is not the next one (0)"),
        (MEMO_MAX, "BINPUT at byte 3: memo index 4294967295 is not the next one (0)"),
        (b"\x80\x04h\x00.", "BINGET at byte 2: memo index 0 is not assigned"),
        (
            b"\x80\x04N\x94j\x01\x00\x00\x00.",
            "BINGET at byte 4: memo index 1 is not assigned",
        ),
        (b"Np5\n.", "PUT at byte 1: memo index 5 is not the next one (0)"),
        (
            b"\x80\x04\x8e" + u8(2**40) + b".",
            "BINBYTES8 at byte 2: length 1099511627776 exceeds the 1 bytes left",
        ),
        (
            b"\x80\x04X" + u4(2**31) + b"ab.",
            "BINUNICODE at byte 2: length 2147483648 exceeds the 3 bytes left",
        ),
        (
            b"\x80\x04T" + struct.pack("<i", -1) + b".",
            "BINSTRING at byte 2: negative length -1",
        ),
        (
            b"\x80\x04\x8b" + struct.pack("<i", 2**30) + b".",
            "LONG4 at byte 2: length 1073741824 exceeds the 1 bytes left",
        ),
        (
            b"\x80\x04\x95" + u8(2**62) + b"N.",
            "FRAME at byte 2: length 4611686018427387904 exceeds the 2 bytes left",
        ),
        (
            b"\x80\x04\x96" + u8(9) + b"ab.",
            "BYTEARRAY8 at byte 2: length 9 exceeds the 3 bytes left",
        ),
        (
            b"\x80\x04U\xffab.",
            "SHORT_BINSTRING at byte 2: length 255 exceeds the 3 bytes left",
        ),
        (b"\x80\x04\x8a\xff.", "LONG1 at byte 2: length 255 exceeds the 1 bytes left"),
        (b"\x80\x04N.junk", "STOP at byte 3: 4 bytes after it"),
        (b"\x80\x04NN.", "STOP at byte 4: not exactly one object left"),
        (b"\x80\x04N\x80\x04.", "PROTO at byte 3: only allowed at the start"),
        (b"\x80\x06N.", "unsupported pickle protocol"),
        (b"\x80\x04a.", "APPEND at byte 2: stack underflow"),
        (b"\x80\x04}Na.", "APPEND at byte 4: not to a list"),
        (b"\x80\x04NK\x01\x85R.", "REDUCE at byte 6: not a global and a tuple"),
        (b"I" + b"1" * 5000 + b"\n.", "INT at byte 0: no line end within 4300 bytes"),
        (
            b"\x80\x04]\x94h\x00a.",
            "APPEND at byte 6: a container grows after being put into another one (recursive structures are not allowed)",
        ),
        (b"\x80\x04", "truncated: no STOP"),
        (b"\x80\x04\xff.", "unknown opcode b'\\xff' at byte 2"),
    ],
)
def test_hostile_pickles_are_refused(payload, problem):
    assert vet(payload) == problem
    error = decode_frame(base64.encodebytes(payload), ALLOWED, True)
    assert error == BgpyError(f"Invalid message: {problem}.", True)


def test_the_28_byte_memo_frame_allocates_nothing():
    body = base64.encodebytes(MEMO_30M)
    assert len(body) + 16 <= 32
    tracemalloc.start()
    try:
        assert decode_frame(body).close
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_colliding_number_keys_are_bounded():
    # Every key hashes to 0: inserting n of them costs n**2 probes.
    keys = {k * (2**61 - 1): 0 for k in range(1, 5000)}
    problem = vet(pickle.dumps(keys, protocol=4))
    assert problem.endswith("more than 4096 keys that are not strings")
    assert vet(pickle.dumps({str(k): 0 for k in range(20_000)}, protocol=4)) is None


def test_memory_amplification_is_refused():
    # A million empty dicts cost ~80 bytes each from 1 byte of pickle.
    payload = b"\x80\x04](" + b"}" * 1_000_000 + b"e."
    assert vet(payload) == "it would need more than 64 times its size in memory"
    # The same shape, small, is fine.
    assert vet(b"\x80\x04](" + b"}" * 1000 + b"e.") is None


# -- property-based ------------------------------------------------------------

OPS = [op for op in pickletools.opcodes]

GLOBALS = [
    b"bgpy.core.message\nMessage\n",
    b"bgpy.core.message\nMessageType\n",
    b"bgpy_tasks\ninit_task\n",
    b"builtins\neval\n",
    b"os\nsystem\n",
]


def lengths(width):
    top = 2 ** (8 * width) - 1
    return st.one_of(st.integers(0, min(top, 12)), st.integers(0, top))


@st.composite
def argument(draw, op):
    kind = op.arg.name if op.arg is not None else None
    if kind is None:
        return b""
    if kind in ("uint1", "uint2", "int4", "uint4", "uint8"):
        width = {"uint1": 1, "uint2": 2, "int4": 4, "uint4": 4, "uint8": 8}[kind]
        n = draw(lengths(width))
        if kind in ("uint4", "uint8", "int4") and op.name in (
            "LONG_BINGET",
            "LONG_BINPUT",
            "FRAME",
        ):
            n = draw(st.one_of(st.integers(0, 8), st.just(n)))
        return n.to_bytes(width, "little")
    if kind in ("decimalnl_short", "decimalnl_long"):
        return str(
            draw(
                st.integers(-(10**30), 10**30)
                if op.name not in ("GET", "PUT")
                else st.integers(0, 10)
            )
        ).encode() + draw(st.sampled_from([b"\n", b"L\n", b""]))
    if kind == "floatnl":
        return repr(draw(st.floats())).encode() + b"\n"
    if kind == "stringnl":
        return repr(draw(st.binary(max_size=10))).encode()[1:] + b"\n"
    if kind in ("stringnl_noescape", "unicodestringnl"):
        return draw(st.text(alphabet="abc\\u01", max_size=8)).encode() + b"\n"
    if kind == "stringnl_noescape_pair":
        return draw(st.sampled_from(GLOBALS))
    if kind == "float8":
        return draw(st.binary(min_size=8, max_size=8))
    # counted: long1, long4, string1, string4, bytes1/4/8, unicodestring1/4/8, bytearray8
    width = {"1": 1, "4": 4, "8": 8}[kind[-1]]
    data = draw(st.binary(max_size=12))
    n = draw(st.one_of(st.just(len(data)), lengths(width)))
    signed = kind in ("long4", "string4")
    if signed:
        n = n - 2**31 if n >= 2**31 else n
    return n.to_bytes(width, "little", signed=signed) + data


@st.composite
def opcode_pickles(draw):
    ops = draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=30))
    out = [b"\x80" + bytes([draw(st.integers(0, 6))])] if draw(st.booleans()) else []
    for op in ops:
        out.append(op.code.encode("latin-1") + draw(argument(op)))
    if draw(st.booleans()):
        out.append(b".")
    return b"".join(out)


def check(payload):
    problem = vet(payload)
    if problem is not None:
        assert loads_message(payload, ALLOWED, True) == BgpyError(
            f"Invalid message: {problem}.", True
        )
        return
    result = within_memory_bound(payload)
    assert isinstance(result, (Message, BgpyError))
    if isinstance(result, Message):
        assert isinstance(result.type, MessageType) and isinstance(result.args, dict)


@FUZZ
@given(opcode_pickles())
def test_any_opcode_sequence_is_refused_or_decodes_cleanly(payload):
    check(payload)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    st.integers(2, 5),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(OPS), st.booleans()),
        max_size=4,
    ),
)
def test_messages_with_opcodes_spliced_in(args, protocol, splices):
    from bgpy.core.message import Message as BgpyMessage
    from bgpy.core.message import MessageType as BgpyType

    # (one draw for two properties: the answer this bridge pickles of the
    # same arguments is accepted whole)
    assert vet(pickle_message(Message(MessageType.OK, args))) is None
    raw = bytearray(pickle.dumps(BgpyMessage(BgpyType.EXEC, args), protocol=protocol))
    assert vet(bytes(raw)) is None or "recursive" in vet(bytes(raw))
    for position, op, replace in splices:
        at = position % len(raw)
        code = op.code.encode("latin-1")
        raw[at : at + (1 if replace else 0)] = code
    check(bytes(raw))
