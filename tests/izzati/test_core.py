"""The pure core: body parsing in any chunking, file names, response encoding."""

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twistbridge.izzati._core import (
    BodyParser,
    FileReturn,
    IzzatiError,
    Response,
    body_kind,
    encode_result,
    error_response,
    exception_message,
    media_type,
    safe_filename,
    text_from_pairs,
)
from twistbridge.izzati._files import UploadedFile, UploadStore

BOUNDARY = "b0undary"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def part(name, value, filename=None, content_type=None):
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def body(*parts):
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class MemoryFiles:
    """open_file/done_file for tests: files in memory."""

    def __init__(self):
        self.items = []

    def open_file(self, filename, content_type, name):
        item = {
            "filename": filename,
            "content_type": content_type,
            "name": name,
            "data": io.BytesIO(),
        }
        self.items.append(item)
        return item, item["data"]

    def done_file(self, item, size):
        item["size"] = size


def parse(content_type, data, chunk=None):
    files = MemoryFiles()
    parser = BodyParser(content_type, files.open_file, files.done_file)
    chunk = chunk or max(1, len(data))
    for i in range(0, len(data), chunk):
        parser.feed(data[i : i + chunk])
    return parser.finish(), files


SAMPLE = body(
    part("name", b"ann"),
    part("tag", b"a"),
    part(
        "file",
        b"\x00\r\n--not-a-boundary\r\nbinary",
        filename="a.bin",
        content_type="image/png",
    ),
    part("tag", "\u00e9".encode()),
    part("file", b"", filename="empty.txt"),
)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 10_000])
def test_multipart_in_any_chunking(chunk):
    outcome, files = parse(CT, SAMPLE, chunk)
    text, items = outcome
    assert text == {"name": "ann", "tag": ["a", "\u00e9"]}
    assert [
        (i["filename"], i["name"], i["content_type"], i["size"], i["data"].getvalue())
        for i in items
    ] == [
        ("a.bin", "file", "image/png", 27, b"\x00\r\n--not-a-boundary\r\nbinary"),
        ("empty.txt", "file", "application/octet-stream", 0, b""),
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=len(SAMPLE)), min_size=1, max_size=12)
)
def test_multipart_split_anywhere(cuts):
    files = MemoryFiles()
    parser = BodyParser(CT, files.open_file, files.done_file)
    points = sorted(set(cuts)) + [len(SAMPLE)]
    start = 0
    for p in points:
        parser.feed(SAMPLE[start:p])
        start = p
    text, items = parser.finish()
    assert text == {"name": "ann", "tag": ["a", "\u00e9"]}
    assert [i["size"] for i in items] == [27, 0]


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=400),
    st.sampled_from(
        [
            CT,
            "application/json",
            "application/x-www-form-urlencoded",
            None,
            "text/plain",
        ]
    ),
)
def test_garbage_never_raises(data, content_type):
    outcome, _ = parse(content_type, data, 13)
    assert isinstance(outcome, (tuple, IzzatiError))
    if isinstance(outcome, IzzatiError):
        assert outcome.code in (400, 413) and outcome.message


def test_truncated_multipart_is_400():
    outcome, _ = parse(CT, SAMPLE[:-10])
    assert outcome.code == 400
    assert outcome.message == (
        f"malformed multipart body ({len(SAMPLE) - 10} bytes received): "
        "Unexpected end of multipart stream (parser closed)"
    )


def test_too_many_parts_is_413():
    files = MemoryFiles()
    parser = BodyParser(CT, files.open_file, files.done_file, max_parts=3)
    parser.feed(body(*[part(f"f{i}", b"v") for i in range(5)]))
    outcome = parser.finish()
    assert (outcome.code, outcome.message) == (
        413,
        "multipart body over a limit: Maximum segment count exceeded",
    )


def test_fields_over_memory_limit_are_413():
    files = MemoryFiles()
    parser = BodyParser(CT, files.open_file, files.done_file, max_fields_size=10)
    parser.feed(body(part("a", b"x" * 11)))
    assert parser.finish().code == 413
    # Files do not count against it.
    parser = BodyParser(CT, files.open_file, files.done_file, max_fields_size=10)
    parser.feed(body(part("f", b"x" * 1000, filename="f")))
    assert parser.finish()[1][-1]["size"] == 1000


def test_form_and_json_and_empty():
    assert parse("application/x-www-form-urlencoded", b"a=1&b=2&b=&c=%C3%A9")[0] == (
        {"a": "1", "b": ["2", ""], "c": "\u00e9"},
        [],
    )
    assert parse("application/json; charset=utf-8", b'{"a": [1, {"b": null}]}')[0] == (
        {"a": [1, {"b": None}]},
        [],
    )
    assert parse(None, b"")[0] == ({}, [])
    assert parse("application/json", b"  ")[0] == ({}, [])
    outcome = parse(None, b"x")[0]
    assert outcome.code == 400 and "needs a Content-Type" in outcome.message


def test_media_type_and_kind():
    assert media_type('Multipart/Form-Data; Boundary="a \\"b\\""; x=1') == (
        "multipart/form-data",
        {"boundary": 'a "b"', "x": "1"},
    )
    assert [
        body_kind(c)
        for c in [
            None,
            "",
            CT,
            "application/x-www-form-urlencoded",
            "application/vnd.api+json",
            "text/csv",
        ]
    ] == [
        "none",
        "none",
        "multipart",
        "form",
        "json",
        "other",
    ]


def test_text_from_pairs():
    assert text_from_pairs([("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")]) == {
        "a": ["1", "3", "4"],
        "b": "2",
    }


@pytest.mark.parametrize(
    "name, safe",
    [
        ("../../etc/passwd", "passwd"),
        ("/abs/evil.sh", "evil.sh"),
        ("..\\..\\win.ini", "win.ini"),
        ("C:\\Users\\x\\doc.txt", "doc.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("..", "upload"),
        (".bashrc", "bashrc"),
        ("", "upload"),
        (None, "upload"),
        ("CON.txt", "_CON.txt"),
        ("\u0444\u043e\u0442\u043e.jpg", "\u0444\u043e\u0442\u043e.jpg"),
        ('a<b>c:"d|e?f*.txt', "abcdef.txt"),
        ("x" * 300 + ".tar", "x" * 196 + ".tar"),
    ],
)
def test_safe_filename(name, safe):
    assert safe_filename(name) == safe


@given(st.text(max_size=300))
def test_safe_filename_never_escapes(name):
    safe = safe_filename(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert safe not in (".", "..") and not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= 200


def test_encode_result():
    r = encode_result({"a": 1})
    assert (r.code, r.content_type, r.body) == (200, "application/json", b'{"a": 1}')
    assert encode_result([1]).body == b"[1]"
    assert encode_result(None).body == b"null"
    r = encode_result(b"\x00")
    assert (r.content_type, r.body) == ("application/octet-stream", b"\x00")
    r = encode_result("h\u00e9")
    assert (r.content_type, r.body) == ("text/plain; charset=utf-8", "h\u00e9".encode())
    f = FileReturn("/x/report.pdf")
    assert encode_result(f) is f and f.content_type == "application/pdf"
    assert FileReturn("/x/a.tar.gz").content_type == "application/octet-stream"
    with pytest.raises(IzzatiError) as e:
        encode_result({"x": object()})
    assert e.value.code == 500 and "not JSON" in e.value.message


def test_error_response_and_messages():
    r = error_response(IzzatiError(400, "bad"))
    assert (r.code, r.content_type, json.loads(r.body)) == (
        400,
        "application/json",
        {"error": "bad"},
    )
    assert isinstance(r, Response)
    assert exception_message(ValueError("x")) == "ValueError: x"
    assert exception_message(KeyError()) == "KeyError"


def test_uploaded_file_save_read_and_cleanup(tmp_path):
    store = UploadStore(str(tmp_path))
    item, sink = store.open_file("../sneaky name.txt", "text/plain", "file")
    sink.write(b"hello world")
    store.done_file(item, 11)
    assert (item.size, item.read(5)) == (11, b"hello")
    # save() writes the whole file, wherever reading got to, and keeps the position.
    saved = item.save(str(tmp_path))
    assert saved == str(tmp_path / "sneaky name.txt")
    assert (tmp_path / "sneaky name.txt").read_bytes() == b"hello world"
    assert item.read() == b" world"
    out = io.BytesIO()
    item.save(out)
    assert out.getvalue() == b"hello world"
    item.save(str(tmp_path / "exact.bin"))
    assert (tmp_path / "exact.bin").read_bytes() == b"hello world"
    # Never through a symlink planted under the sanitized name.
    (tmp_path / "sneaky name.txt").unlink()
    (tmp_path / "sneaky name.txt").symlink_to(tmp_path / "victim")
    with pytest.raises(OSError):
        item.save(str(tmp_path))
    assert not (tmp_path / "victim").exists()
    store.close()
    assert item.stream.closed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "exact.bin",
        "sneaky name.txt",
    ]
    assert isinstance(item, UploadedFile)


def test_small_files_stay_in_memory_large_ones_go_to_disk(tmp_path):
    from twistbridge.izzati import _files

    store = UploadStore(str(tmp_path))
    small, sink = store.open_file("s.txt", "text/plain")
    sink.write(b"s" * 1000)
    store.done_file(small, 1000)
    assert isinstance(small.stream, io.BytesIO) and store.spooled == 1000
    big, sink = store.open_file("b.bin", "application/octet-stream")
    for _ in range(5):
        sink.write(b"b" * 100_000)  # rolls over past SPOOL_FILE
    store.done_file(big, 500_000)
    assert not isinstance(big.stream, io.BytesIO)
    assert (store.spooled, store.disk_files) == (1000, 1)
    assert big.read() == b"b" * 500_000 and small.read() == b"s" * 1000
    # The request's budget: once spent, even small files go to disk.
    store.spooled = _files.SPOOL_BUDGET
    third, sink = store.open_file("t.txt", "text/plain")
    sink.write(b"t")
    assert not isinstance(third.stream, io.BytesIO) and store.disk_files == 2
    store.close()
    assert big.stream.closed and small.stream.closed and third.stream.closed


def test_too_many_large_files_is_413(tmp_path, monkeypatch):
    from twistbridge.izzati import _files

    monkeypatch.setattr(_files, "MAX_DISK_FILES", 2)
    monkeypatch.setattr(_files, "SPOOL_FILE", 4)
    store = UploadStore(str(tmp_path))
    parser = BodyParser(CT, store.open_file, store.done_file)
    parser.feed(body(*[part("file", b"12345", filename=f"{i}.bin") for i in range(3)]))
    outcome = parser.finish()
    assert (outcome.code, outcome.message) == (
        413,
        "more than 2 large files in one request",
    )
    assert store.disk_files == 2
    store.close()


# --- form limits ---------------------------------------------------------

FORM_TYPE = "application/x-www-form-urlencoded"
TOO_MANY = IzzatiError(
    413, "form body has more than 1000 fields (send large data as files or as JSON)"
)
FIELD_TOO_BIG = IzzatiError(
    413, "a form field is over 1048576 bytes (send large data as files)"
)


@pytest.mark.parametrize("chunk", [None, 1, 7, 4096])
def test_form_of_exactly_the_field_cap_is_parsed(chunk):
    data = b"&".join(b"f%d=%d" % (i, i) for i in range(1000))
    (text, files), _ = parse(FORM_TYPE, data, chunk)
    assert len(text) == 1000 and text["f999"] == "999"


@pytest.mark.parametrize("chunk", [None, 1, 7, 4096])
def test_form_over_the_field_cap_is_refused(chunk):
    data = b"&".join(b"f%d=%d" % (i, i) for i in range(1001))
    error, _ = parse(FORM_TYPE, data, chunk)
    assert (error.code, error.message) == (TOO_MANY.code, TOO_MANY.message)


def test_form_refused_before_the_rest_is_parsed():
    files = MemoryFiles()
    parser = BodyParser(FORM_TYPE, files.open_file, files.done_file)
    parser.feed(b"a&" * 1000)
    assert parser.error is not None and parser.error.message == TOO_MANY.message
    # nothing more is kept: the rest of a hostile body costs nothing
    parser.feed(b"a&" * 100_000)
    assert parser._buffer == []
    assert parser.finish() is parser.error


@pytest.mark.parametrize("chunk", [None, 1000, 65536])
@pytest.mark.parametrize(
    "data",
    [
        # "name=value" of exactly the bound
        b"a=" + b"x" * (1024**2 - 2),
        b"b=1&a=" + b"x" * (1024**2 - 2) + b"&c=2",
    ],
)
def test_form_field_at_the_bound_is_parsed(data, chunk):
    (text, _), _ = parse(FORM_TYPE, data, chunk)
    assert len(text["a"]) == 1024**2 - 2


@pytest.mark.parametrize("chunk", [None, 1000, 65536])
@pytest.mark.parametrize(
    "data",
    [
        b"a=" + b"x" * 1024**2,  # the last field
        b"a=" + b"x" * 1024**2 + b"&b=1",  # the first field
        b"b=1&a=" + b"x" * 1024**2 + b"&c=2",  # a middle field
        b"x" * (1024**2 + 1),  # a name without a value
    ],
)
def test_form_field_over_the_bound_is_refused(data, chunk):
    error, _ = parse(FORM_TYPE, data, chunk)
    assert (error.code, error.message) == (FIELD_TOO_BIG.code, FIELD_TOO_BIG.message)


def test_large_bodies_are_marked_heavy():
    files = MemoryFiles()
    small = BodyParser("application/json", files.open_file, files.done_file)
    small.feed(b'{"a": "' + b"x" * 1000 + b'"}')
    assert not small.heavy
    large = BodyParser("application/json", files.open_file, files.done_file)
    large.feed(b'{"a": "' + b"x" * 70_000 + b'"}')
    assert large.heavy
    assert large.finish() == ({"a": "x" * 70_000}, [])


def test_large_json_body_of_too_many_containers_is_413():
    from twistbridge.izzati._core import IzzatiError, parse_json_text

    body = b'{"a": [' + b",".join([b"[]"] * 100_001) + b"]}"
    with pytest.raises(IzzatiError) as raised:
        parse_json_text(body)
    assert (raised.value.code, str(raised.value.message)) == (
        413,
        "JSON body holds more than 100000 arrays and objects",
    )
    fine = b'{"a": [' + b",".join([b"1"] * 100_001) + b"]}"
    assert len(parse_json_text(fine)["a"]) == 100_001
