"""
The pickle vetter: every bgpy pickle read from the network goes through
L{vet} before any unpickler sees it.

L{vet} walks the pickle's opcodes itself (it never uses L{pickletools},
which trusts the length fields it reads) and simulates the unpickler's
stacks without building a single object.  It refuses:

    - any opcode the pickler does not write for a bgpy C{Message}
      (persistent ids, the extension registry, C{INST}/C{OBJ},
      C{NEWOBJ_EX}, C{DUP}, out-of-band buffers), C{PROTO} anywhere but
      at the start, data after C{STOP};
    - more than L{MAX_OPS} opcodes;
    - containers nested deeper than L{MAX_DEPTH} (counting tuples, lists,
      dicts, sets and objects) or marks nested deeper than that; a
      container that grows deeper after being put into another one (a
      recursive structure);
    - memo stores other than to the next free index (or one already
      assigned) and memo fetches of an index not assigned yet;
    - every length field (strings, bytes, big integers, frames) larger than
      the bytes left, negative lengths, text arguments without their line
      end or longer than their kind allows;
    - stack underflow, the wrong kind of operand where the kind is known
      (C{APPEND} to a non-list, C{REDUCE} of a non-global, ...), and
      anything but exactly one object left at C{STOP};
    - more than L{MAX_HASHED_KEYS} dict keys and set members that are not
      strings or bytes (whose hashes are randomised), so that colliding
      numbers cannot make insertion quadratic;
    - an estimate of the memory the unpickler would allocate above
      L{MEMORY_FACTOR} times the pickle's size plus L{MEMORY_BASE}.

It is pure: no I/O, no Twisted, no imports of what a pickle names.

This module is longer than most because it is one walk over a pickle's
opcodes with the table of what each may do; split, the table and the walk
would have to be read side by side.
"""

from __future__ import annotations

from typing import List, Optional

from twistbridge.bgpy._core import BgpyError

MAX_OPS = 10_000_000
"""Opcodes one pickle may hold."""

MAX_DEPTH = 100
"""Container nesting (and mark nesting) one pickle may reach."""

MAX_HASHED_KEYS = 4096
"""Dict keys and set members that are not C{str} or C{bytes}, per pickle."""

MEMORY_FACTOR = 64
"""The unpickler may allocate this many times the pickle's size ..."""

MEMORY_BASE = 1 << 20
"""... plus this many bytes."""

MAX_TEXT_ARG = 4300
"""The longest text argument (C{INT}, C{LONG}, C{GET}, ...), in bytes."""

MAX_PROTOCOL = 5
"""The highest pickle protocol accepted."""


class Refused(Exception):
    """A pickle the vetter refuses; the message says why."""


# Kinds of stack entries (what the unpickler would hold there).
_SCALAR, _STR, _BYTES, _TUPLE, _LIST, _DICT, _SET, _FROZENSET = range(8)
_GLOBAL, _OBJECT = 8, 9
_UNHASHED = (_STR, _BYTES)  # keys whose hash is randomised per process

# A stack entry is a list [kind, depth, adopted]: depth of nesting below it
# (0 for scalars), and whether it has been put into another container (its
# depth may then no longer grow).  The memo holds the same lists, so an
# entry fetched back is the same entry.
_K, _D, _A = 0, 1, 2
_Entry = List[int]  # [kind, depth, adopted (a bool)]

_REFUSED = {
    b"P": "persistent ids (PERSID) are not allowed",
    b"Q": "persistent ids (BINPERSID) are not allowed",
    b"\x82": "the extension registry (EXT1) is not allowed",
    b"\x83": "the extension registry (EXT2) is not allowed",
    b"\x84": "the extension registry (EXT4) is not allowed",
    b"i": "INST is not allowed",
    b"o": "OBJ is not allowed",
    b"\x92": "NEWOBJ_EX is not allowed",
    b"2": "DUP is not allowed",
    b"\x97": "out-of-band buffers (NEXT_BUFFER) are not allowed",
    b"\x98": "out-of-band buffers (READONLY_BUFFER) are not allowed",
}

# Counted-length opcodes: code -> (name, bytes of the length, signed, kind,
# bytes the result costs besides its data, bytes per byte of data).
_COUNTED = {
    ord("X"): ("BINUNICODE", 4, False, _STR, 64, 4),
    0x8C: ("SHORT_BINUNICODE", 1, False, _STR, 64, 4),
    0x8D: ("BINUNICODE8", 8, False, _STR, 64, 4),
    ord("T"): ("BINSTRING", 4, True, _STR, 64, 4),
    ord("U"): ("SHORT_BINSTRING", 1, False, _STR, 64, 4),
    ord("B"): ("BINBYTES", 4, False, _BYTES, 48, 1),
    ord("C"): ("SHORT_BINBYTES", 1, False, _BYTES, 48, 1),
    0x8E: ("BINBYTES8", 8, False, _BYTES, 48, 1),
    0x96: ("BYTEARRAY8", 8, False, _LIST, 64, 1),
    0x8A: ("LONG1", 1, False, _SCALAR, 40, 1),
    0x8B: ("LONG4", 4, True, _SCALAR, 40, 1),
}

# Fixed-size scalar opcodes: code -> argument bytes.
_FIXED = {
    ord("N"): 0,
    0x88: 0,
    0x89: 0,
    ord("K"): 1,
    ord("M"): 2,
    ord("J"): 4,
    ord("G"): 8,
}

# Text opcodes pushing a scalar: code -> (name, kind, longest line).
_TEXT = {
    ord("I"): ("INT", _SCALAR, MAX_TEXT_ARG),
    ord("L"): ("LONG", _SCALAR, MAX_TEXT_ARG),
    ord("F"): ("FLOAT", _SCALAR, 400),
}

_MAX_LINE_STRING = 1 << 30  # STRING / UNICODE lines: bounded by the data


def vet(data: bytes) -> Optional[str]:
    """
    Check one pickle.

    @return: L{None} when it may be unpickled, else why not (one line).
    """
    try:
        _walk(data)
    except Refused as e:
        return str(e)
    return None


def _walk(data: bytes) -> None:  # noqa: C901 (one loop, one branch per opcode)
    size = len(data)
    budget = MEMORY_FACTOR * size + MEMORY_BASE
    cost = 0
    stack: List[_Entry] = []
    marks: List[int] = []
    memo: List[_Entry] = []
    hashed = 0
    ops = 0
    pos = 0
    scalar = [_SCALAR, 0, False]
    string = [_STR, 0, False]
    byte_string = [_BYTES, 0, False]

    def fence() -> int:
        return marks[-1] if marks else 0

    def need(count: int, name: str) -> None:
        if len(stack) - fence() < count:
            raise Refused(f"{name} at byte {at}: stack underflow")

    def pop_mark(name: str) -> List[_Entry]:
        if not marks:
            raise Refused(f"{name} at byte {at}: no MARK")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def adopt(child: _Entry) -> int:
        child[_A] = True
        return child[_D] + 1

    def deepen(entry: _Entry, depth: int, name: str) -> None:
        if depth > entry[_D]:
            if entry[_A]:
                raise Refused(
                    f"{name} at byte {at}: a container grows after being "
                    "put into another one (recursive structures are not "
                    "allowed)"
                )
            if depth > MAX_DEPTH:
                raise Refused(f"{name} at byte {at}: nesting deeper than {MAX_DEPTH}")
            entry[_D] = depth

    def new(kind: int, children: List[_Entry], name: str) -> _Entry:
        depth = 1
        for child in children:
            d = adopt(child)
            if d > depth:
                depth = d
        if depth > MAX_DEPTH:
            raise Refused(f"{name} at byte {at}: nesting deeper than {MAX_DEPTH}")
        return [kind, depth, False]

    def count_keys(keys: List[_Entry], name: str) -> None:
        nonlocal hashed
        for key in keys:
            if key[_K] not in _UNHASHED:
                hashed += 1
        if hashed > MAX_HASHED_KEYS:
            raise Refused(
                f"{name} at byte {at}: more than {MAX_HASHED_KEYS} keys that "
                "are not strings"
            )

    def line(name: str, longest: int) -> int:
        end = data.find(b"\n", pos, pos + longest + 1)
        if end < 0:
            raise Refused(f"{name} at byte {at}: no line end within {longest} bytes")
        return end

    def memo_index(text: bytes, name: str) -> int:
        if not text.isdigit():
            raise Refused(f"{name} at byte {at}: not a memo index")
        return int(text)

    def put(index: int, name: str) -> None:
        need(1, name)
        if index < len(memo):
            memo[index] = stack[-1]
        elif index == len(memo):
            memo.append(stack[-1])
        else:
            raise Refused(
                f"{name} at byte {at}: memo index {index} is not the next "
                f"one ({len(memo)})"
            )

    def get(index: int, name: str) -> None:
        if index >= len(memo):
            raise Refused(f"{name} at byte {at}: memo index {index} is not assigned")
        stack.append(memo[index])

    if size and data[0] == 0x80:
        if size < 2 or data[1] > MAX_PROTOCOL:
            raise Refused("unsupported pickle protocol")
        pos = 2
    while True:
        if pos >= size:
            raise Refused("truncated: no STOP")
        at = pos
        op = data[pos]
        pos += 1
        ops += 1
        if ops > MAX_OPS:
            raise Refused(f"more than {MAX_OPS} opcodes")
        if op == 0x94:  # MEMOIZE (the most frequent: inlined)
            if len(stack) <= (marks[-1] if marks else 0):
                raise Refused(f"MEMOIZE at byte {at}: stack underflow")
            memo.append(stack[-1])
            cost += 16
        elif op in _FIXED:
            n = _FIXED[op]
            if pos + n > size:
                raise Refused(f"truncated at byte {at}")
            pos += n
            stack.append(scalar)
            cost += 40
        elif op in _COUNTED:
            name, width, signed, kind, base, per_byte = _COUNTED[op]
            if pos + width > size:
                raise Refused(f"{name} at byte {at}: truncated length")
            if width == 1:
                n = data[pos]
            else:
                n = int.from_bytes(data[pos : pos + width], "little", signed=signed)
            pos += width
            if n < 0:
                raise Refused(f"{name} at byte {at}: negative length {n}")
            if n > size - pos:
                raise Refused(
                    f"{name} at byte {at}: length {n} exceeds the "
                    f"{size - pos} bytes left"
                )
            pos += n
            if kind == _STR:
                stack.append(string)
            elif kind == _BYTES:
                stack.append(byte_string)
            elif kind == _SCALAR:
                stack.append(scalar)
            else:  # a bytearray: mutable, so an entry of its own
                stack.append([_BYTES, 0, False])
            cost += base + per_byte * n
        elif op == 0x28:  # MARK
            if len(marks) >= MAX_DEPTH:
                raise Refused(
                    f"MARK at byte {at}: marks nested deeper than {MAX_DEPTH}"
                )
            marks.append(len(stack))
            cost += 8
        elif op in (0x71, 0x72):  # BINPUT, LONG_BINPUT
            width = 1 if op == 0x71 else 4
            if pos + width > size:
                raise Refused(f"truncated at byte {at}")
            put(int.from_bytes(data[pos : pos + width], "little"), "BINPUT")
            pos += width
            cost += 16
        elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET
            width = 1 if op == 0x68 else 4
            if pos + width > size:
                raise Refused(f"truncated at byte {at}")
            get(int.from_bytes(data[pos : pos + width], "little"), "BINGET")
            pos += width
            cost += 8
        elif op in (0x70, 0x67):  # PUT, GET (text)
            name = "PUT" if op == 0x70 else "GET"
            end = line(name, 20)
            index = memo_index(data[pos:end], name)
            pos = end + 1
            (put if op == 0x70 else get)(index, name)
            cost += 16
        elif op == 0x61:  # APPEND
            need(2, "APPEND")
            item = stack.pop()
            target = stack[-1]
            if target[_K] != _LIST:
                raise Refused(f"APPEND at byte {at}: not to a list")
            deepen(target, adopt(item), "APPEND")
            cost += 16
        elif op in (0x65, 0x75, 0x90):  # APPENDS, SETITEMS, ADDITEMS
            name, kind = {
                0x65: ("APPENDS", _LIST),
                0x75: ("SETITEMS", _DICT),
                0x90: ("ADDITEMS", _SET),
            }[op]
            items = pop_mark(name)
            if len(stack) - fence() < 1 or stack[-1][_K] != kind:
                raise Refused(f"{name} at byte {at}: not after the right container")
            if kind == _DICT:
                if len(items) % 2:
                    raise Refused(f"SETITEMS at byte {at}: odd number of items")
                count_keys(items[::2], name)
            elif kind == _SET:
                count_keys(items, name)
            target = stack[-1]
            depth = 0
            for item in items:
                d = adopt(item)
                if d > depth:
                    depth = d
            deepen(target, depth, name)
            cost += (16 if kind == _LIST else 48) * len(items)
        elif op == 0x73:  # SETITEM
            need(3, "SETITEM")
            value = stack.pop()
            key = stack.pop()
            target = stack[-1]
            if target[_K] != _DICT:
                raise Refused(f"SETITEM at byte {at}: not to a dict")
            count_keys([key], "SETITEM")
            deepen(target, max(adopt(key), adopt(value)), "SETITEM")
            cost += 96
        elif op in (0x5D, 0x7D, 0x29, 0x8F):  # EMPTY_LIST, _DICT, _TUPLE, _SET
            kind, cost_of = {
                0x5D: (_LIST, 64),
                0x7D: (_DICT, 72),
                0x29: (_TUPLE, 8),
                0x8F: (_SET, 224),
            }[op]
            stack.append([kind, 1, False])
            cost += cost_of
        elif op in (0x85, 0x86, 0x87):  # TUPLE1, TUPLE2, TUPLE3
            n = op - 0x84
            need(n, f"TUPLE{n}")
            items = stack[-n:]
            del stack[-n:]
            stack.append(new(_TUPLE, items, f"TUPLE{n}"))
            cost += 48 + 8 * n
        elif op in (0x74, 0x6C, 0x64, 0x91):  # TUPLE, LIST, DICT, FROZENSET
            name, kind = {
                0x74: ("TUPLE", _TUPLE),
                0x6C: ("LIST", _LIST),
                0x64: ("DICT", _DICT),
                0x91: ("FROZENSET", _FROZENSET),
            }[op]
            items = pop_mark(name)
            if kind == _DICT:
                if len(items) % 2:
                    raise Refused(f"DICT at byte {at}: odd number of items")
                count_keys(items[::2], name)
            elif kind == _FROZENSET:
                count_keys(items, name)
            stack.append(new(kind, items, name))
            cost += 232 + 48 * len(items)
        elif op == 0x93:  # STACK_GLOBAL
            need(2, "STACK_GLOBAL")
            if stack[-1][_K] != _STR or stack[-2][_K] != _STR:
                raise Refused(f"STACK_GLOBAL at byte {at}: names must be strings")
            del stack[-2:]
            stack.append([_GLOBAL, 0, False])
            cost += 64
        elif op == 0x63:  # GLOBAL
            for _ in range(2):
                pos = line("GLOBAL", 1024) + 1
            stack.append([_GLOBAL, 0, False])
            cost += 64
        elif op in (0x52, 0x81):  # REDUCE, NEWOBJ
            name = "REDUCE" if op == 0x52 else "NEWOBJ"
            need(2, name)
            args = stack.pop()
            func = stack.pop()
            if func[_K] != _GLOBAL or args[_K] != _TUPLE:
                raise Refused(f"{name} at byte {at}: not a global and a tuple")
            stack.append(new(_OBJECT, [args], name))
            cost += 64
        elif op == 0x62:  # BUILD
            need(2, "BUILD")
            state = stack.pop()
            target = stack[-1]
            if target[_K] != _OBJECT:
                raise Refused(f"BUILD at byte {at}: not on an object")
            deepen(target, adopt(state), "BUILD")
            cost += 64
        elif op in _TEXT:
            name, kind, longest = _TEXT[op]
            pos = line(name, longest) + 1
            stack.append(scalar)
            cost += 40 + (pos - at)
        elif op in (0x53, 0x56):  # STRING, UNICODE (text)
            name = "STRING" if op == 0x53 else "UNICODE"
            end = line(name, _MAX_LINE_STRING)
            cost += 64 + 4 * (end - pos)
            pos = end + 1
            stack.append(string)
        elif op == 0x30:  # POP
            if marks and len(stack) == marks[-1]:
                marks.pop()
            else:
                need(1, "POP")
                stack.pop()
        elif op == 0x31:  # POP_MARK
            pop_mark("POP_MARK")
        elif op == 0x95:  # FRAME
            if pos + 8 > size:
                raise Refused(f"FRAME at byte {at}: truncated length")
            n = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
            if n > size - pos:
                raise Refused(
                    f"FRAME at byte {at}: length {n} exceeds the "
                    f"{size - pos} bytes left"
                )
            cost += n
        elif op == 0x2E:  # STOP
            if pos != size:
                raise Refused(f"STOP at byte {at}: {size - pos} bytes after it")
            if marks or len(stack) != 1:
                raise Refused(f"STOP at byte {at}: not exactly one object left")
            return
        elif op == 0x80:
            raise Refused(f"PROTO at byte {at}: only allowed at the start")
        else:
            code = bytes([op])
            raise Refused(
                f"{_REFUSED[code]} (byte {at})"
                if code in _REFUSED
                else f"unknown opcode {code!r} at byte {at}"
            )
        if cost > budget:
            raise Refused(
                f"it would need more than {MEMORY_FACTOR} times its size in memory"
            )


def vet_message(data: bytes) -> Optional[BgpyError]:
    """
    Check one bgpy pickle.

    @return: L{None} when it may be unpickled, else the fatal L{BgpyError}
        answered to the client (C{"Invalid message: <why>."}).
    """
    problem = vet(data)
    if problem is None:
        return None
    return BgpyError(f"Invalid message: {problem}.", True)
