"""
The multipart parser's fast path inside a file part's body
(L{BodyParser._payload_first}): the part's bytes go straight to its sink,
searched for the delimiter with L{find_delimiter}; the result is the same
as the multipart parser's, however the body is cut.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twistbridge.izzati import _core
from twistbridge.izzati._core import BodyParser, find_delimiter

from .test_core import CT, MemoryFiles, body, part

DELIMITER = b"\r\n--b0undary"


@pytest.mark.parametrize("memmem", [True, False], ids=["memmem", "bytes.find"])
def test_find_delimiter_is_bytes_find(monkeypatch, memmem):
    if not memmem:
        monkeypatch.setattr(_core, "memmem", None)
    elif _core.memmem is None:
        pytest.skip("no memmem in this C library")
    rng = random.Random(3)
    for _ in range(300):
        data = bytearray(rng.randbytes(rng.randrange(0, 3000)))
        for _ in range(rng.randrange(0, 3)):
            at = rng.randrange(0, len(data) + 1)
            data[at:at] = DELIMITER[: rng.randrange(1, len(DELIMITER) + 1)]
        data = bytes(data)
        assert find_delimiter(data, DELIMITER) == data.find(DELIMITER)
    assert find_delimiter(bytearray(b"x" + DELIMITER), DELIMITER) == 1


def test_file_payload_goes_to_the_sink_uncopied():
    files = MemoryFiles()
    writes = []

    class Sink:
        def write(self, data):
            writes.append(data)

    def open_file(filename, content_type, name):
        files.open_file(filename, content_type, name)
        return files.items[-1], Sink()

    parser = BodyParser(CT, open_file, files.done_file)
    parser.feed(part("file", b"", filename="f")[:-2])
    assert parser.file_payload() is files.items[0]
    chunk = bytes(range(256)) * 64
    parser.feed(chunk)
    assert writes == [chunk] and writes[0] is chunk
    parser.feed(DELIMITER + b"--\r\n")
    assert parser.file_payload() is None
    text, items = parser.finish()
    assert (text, [i["size"] for i in items]) == ({}, [len(chunk)])


PIECES = [b"\r", b"\n", b"-", b"--", b"b0und", b"x" * 50, DELIMITER[:7], DELIMITER[:-1]]


def pieces():
    return st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)


def parse_in(data, cuts, fast):
    files = MemoryFiles()
    parser = BodyParser(CT, files.open_file, files.done_file)
    if not fast:
        parser._payload_first = lambda data: data  # type: ignore[method-assign]
    start = 0
    for point in sorted(set(cuts)) + [len(data)]:
        parser.feed(data[start:point])
        start = point
    outcome = parser.finish()
    if isinstance(outcome, _core.IzzatiError):
        return outcome.code, outcome.message
    text, items = outcome
    return text, [(i["filename"], i["size"], i["data"].getvalue()) for i in items]


@settings(max_examples=200, deadline=None)
@given(pieces(), pieces(), st.lists(st.integers(min_value=0, max_value=300)))
def test_fast_path_gives_what_the_parser_gives(first, second, cuts):
    data = body(
        part("file", first, filename="a"),
        part("note", b"n"),
        part("file", second, filename="b"),
    )
    assert parse_in(data, cuts, fast=True) == parse_in(data, cuts, fast=False)
    # Also cut short, or with a broken delimiter.
    for broken in (
        data[: len(data) // 2],
        data.replace(DELIMITER + b"\r\n", DELIMITER + b"x", 1),
    ):
        assert parse_in(broken, cuts, fast=True) == parse_in(broken, cuts, fast=False)
