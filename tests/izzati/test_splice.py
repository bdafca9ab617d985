"""
Large file parts spliced from the socket into their temporary files
(twistbridge.izzati._splice), over real sockets under `twistd bridge`: the
exact bytes of every field and file, the usual path wherever splicing does
not apply or fails, and hostile bodies.
"""

import hashlib
import http.client
import json
import mmap
import os
import random
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted
import requests
from izzati import Frontend
from multipart import MultipartError, MultipartSegment, PushMultipartParser
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import DefaultOpenSSLContextFactory
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from twistbridge._internals import plain_tcp_reader
from twistbridge.izzati import _splice
from twistbridge.izzati._core import payload_length
from twistbridge.testing import BridgeProcess, wait_for

from ..conftest import apps_environ

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="splicing is Linux's"
    ),
    pytest.mark.one_worker,
]

KiB = 1024
MiB = 1024 * KiB
BOUNDARY = b"spliceTestBoundary"
DELIMITER = b"\r\n--" + BOUNDARY


def bridge(tmpdir, *args, **env):
    environment = apps_environ(TMPDIR=str(tmpdir), **env)
    options = ["--app", "izzati_splice_app:bridge", "--igor-port", "none"]
    return BridgeProcess([*options, "--bgpy-port", "none", *args], env=environment)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with bridge(tmp_path_factory.mktemp("splice-tmp")) as s:
        yield s


@pytest.fixture(scope="module")
def small_pipe(tmp_path_factory):
    """Splices of 4093 bytes: delimiters fall across them at every offset;
    disk blocks allocated 1 MiB ahead."""
    tmp = tmp_path_factory.mktemp("splice-small")
    with bridge(tmp, IZZATI_SPLICE_PIPE="4093", IZZATI_SPLICE_FALLOCATE=str(MiB)) as s:
        yield s


def spliced(server, scheme="http", **kwargs):
    """The bytes the server has spliced so far."""
    answer = requests.post(
        server.url("/", scheme=scheme), data={"action": "calls"}, **kwargs
    )
    return answer.json()["spliced"]


def state(server):
    """The server's answer to an upload of nothing (see izzati_splice_app)."""
    answer = requests.post(server.url("/"), data={"action": "calls"})
    return answer.json()


def file_entry(name, content, field="file", kind="application/octet-stream"):
    return {
        "filename": name,
        "name": field,
        "content_type": kind,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def part(name, value, filename=None, kind="application/octet-stream"):
    disposition = b'form-data; name="%s"' % name.encode()
    head = b"--%s\r\nContent-Disposition: %s" % (BOUNDARY, disposition)
    if filename is not None:
        head += b'; filename="%s"\r\nContent-Type: %s' % (
            filename.encode(),
            kind.encode(),
        )
    return head + b"\r\n\r\n" + value + b"\r\n"


def body_of(*parts):
    return b"".join(parts) + b"--%s--\r\n" % BOUNDARY


def post(server, body, scheme="http", **kwargs):
    return requests.post(
        server.url("/", scheme=scheme),
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"},
        timeout=60,
        **kwargs,
    )


def server_pipes(server):
    """The pipes the server process holds open."""
    fds = f"/proc/{server.process.pid}/fd"
    found = 0
    for fd in os.listdir(fds):
        try:
            found += os.readlink(os.path.join(fds, fd)).startswith("pipe:")
        except OSError:
            pass
    return found


# --- the rule for how much of a piece is payload -------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"plain bytes", 11),
        (b"abc" + DELIMITER + b"\r\n", 3),
        (DELIMITER + b"--", 0),
        (b"abc\r", 3),  # may begin a delimiter: held back
        (b"abc\r\n--splice", 3),
        (b"abc\r\n--splicX", 13),  # cannot: all payload
        (b"abc\rx", 5),
        (b"\r\n--spliceTestBoundar", 0),
    ],
)
def test_payload_length_is_the_parsers_rule(data, expected):
    assert payload_length(data, DELIMITER, 0, len(data)) == expected
    padded = b"xx" + data + b"yy"
    assert payload_length(padded, DELIMITER, 2, 2 + len(data)) == expected
    assert parser_payload(data) == expected


def parser_payload(data):
    """The payload bytes the multipart parser passes on from C{data}, fed
    to it inside a part's body with nothing held back."""
    parser = PushMultipartParser(BOUNDARY)
    events = list(parser.parse(part("f", b"", "f")[:-2]))
    assert isinstance(events[-1], MultipartSegment)
    passed = 0
    try:
        for event in parser.parse(data):
            if not isinstance(event, (bytes, bytearray)):
                break
            passed += len(event)
    except MultipartError:
        pass
    return passed


def test_payload_length_agrees_with_the_parser_on_tricky_pieces():
    rng = random.Random(20)
    alphabet = [b"\r", b"\n", b"-", b"--", DELIMITER[: rng.randrange(1, 22)], b"x"]
    for _ in range(3000):
        piece = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
        if rng.random() < 0.2:
            piece += DELIMITER + rng.choice([b"\r\n", b"--", b"", b"x"])
        assert payload_length(piece, DELIMITER, 0, len(piece)) == parser_payload(
            piece
        ), piece


@pytest.mark.parametrize("memmem", [True, False], ids=["memmem", "mmap.find"])
def test_find_in_pages(tmp_path, monkeypatch, memmem):
    if not memmem:
        monkeypatch.setattr(_splice, "_memmem", None)
    elif _splice._memmem is None:
        pytest.skip("no memmem in this C library")
    rng = random.Random(7)
    data = bytearray(rng.randbytes(3 * MiB))
    for at in (5, MiB - 3, MiB + 4000, 3 * MiB - len(DELIMITER)):
        data[at : at + len(DELIMITER)] = DELIMITER
    path = tmp_path / "pages"
    path.write_bytes(data)
    with (
        open(path, "r+b") as f,
        mmap.mmap(f.fileno(), 0, access=_splice._ACCESS) as pages,
    ):
        for start, end in [(0, len(data)), (6, MiB), (MiB - 3, MiB + 20), (0, 30),
                           (MiB + 4001, len(data)), (MiB + 4001, len(data) - 1)]:  # fmt: skip
            expected = bytes(data).find(DELIMITER, start, end)
            assert _splice._find(pages, DELIMITER, start, end) == expected


# --- spliced uploads: the exact bytes -----------------------------------------


def test_frontend_upload_is_spliced_byte_for_byte(server, tmp_path):
    content = os.urandom(6 * MiB)
    path = tmp_path / "big.bin"
    path.write_bytes(content)
    before = spliced(server)
    with open(path, "rb") as f:
        answer = Frontend(server.url("/")).send({"name": "ann", "tag": ["a", "b"]}, f)
    assert answer["text"] == {"name": "ann", "tag": ["a", "b"]}
    assert answer["files"] == [file_entry("big.bin", content)]
    assert answer["spliced"] - before >= len(content) - MiB


def test_many_parts_around_spliced_ones(server):
    big, other = os.urandom(3 * MiB), os.urandom(2 * MiB + 17)
    small = os.urandom(100 * KiB)
    # File data that looks like the start of a delimiter, and a delimiter
    # of another boundary.
    tricky = (
        os.urandom(MiB) + b"\r\n--spliceTest" + os.urandom(MiB) + b"\r\n--other\r\n"
    )
    tricky += os.urandom(MiB) + b"\r"
    body = body_of(
        part("first", b"one"),
        part("file", big, "a.bin"),
        part("note", "\u00e9t\u00e9".encode()),
        part("file", small, "small.txt", "text/plain"),
        part("other", other, "b.bin"),
        part("file", tricky, "tricky.bin"),
        part("first", b"two"),
    )
    before = spliced(server)
    answer = post(server, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["text"] == {"first": ["one", "two"], "note": "\u00e9t\u00e9"}
    assert result["files"] == [
        file_entry("a.bin", big),
        file_entry("small.txt", small, kind="text/plain"),
        file_entry("b.bin", other, field="other"),
        file_entry("tricky.bin", tricky),
    ]
    assert result["spliced"] - before >= len(big) + len(tricky) - 3 * MiB


def test_delimiters_across_splices(small_pipe):
    # Parts of sizes that put every delimiter at another offset of a splice.
    files = [os.urandom(300 * KiB + 977 * i) + b"\r\n--" for i in range(8)]
    body = body_of(
        *(part("file", data, f"f{i}.bin") for i, data in enumerate(files)),
        part("end", b"done"),
    )
    before = spliced(small_pipe)
    answer = post(small_pipe, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["text"] == {"end": "done"}
    assert result["files"] == [
        file_entry(f"f{i}.bin", data) for i, data in enumerate(files)
    ]
    assert result["spliced"] > before


def stored_once(server, body, name, content):
    """
    Upload C{body}, whose one file part is C{content} named C{name}, and
    check the file the callback got and its size on disk; the fallocate
    calls of this upload and the bytes it spliced.
    """
    before = state(server)
    answer = post(server, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["files"] == [file_entry(name, content)]
    assert result["on_disk"] == [len(content)]
    calls = result["fallocated"][len(before["fallocated"]) :]
    return calls, result["spliced"] - before["spliced"]


def test_spliced_file_is_preallocated_to_the_end_of_the_body(server):
    # One fallocate covers the rest of the body (less than PREALLOCATE is
    # left), without making the file longer: it ends with the part's bytes.
    # (No CR in the file: splicing goes on to the body's last bytes.)
    content = os.urandom(6 * MiB + 5).replace(b"\r", b"-")
    head = part("note", b"first")
    body = body_of(head, part("file", content, "p.bin"))
    prefix = body.index(content)
    calls, spliced_now = stored_once(server, body, "p.bin", content)
    assert len(calls) == 1
    [[offset, length]] = calls
    assert offset + length == len(body) - prefix
    assert spliced_now >= len(content) - MiB


def test_preallocation_runs_ahead_of_the_splices(small_pipe):
    # 1 MiB ahead: each fallocate starts where the last ended, none goes
    # past the body, and together they cover every byte spliced.  (No CR in
    # the file: no splice ends in what may begin a delimiter, which would
    # hand the part back to the usual path for a while.)
    content = os.urandom(5 * MiB + 17).replace(b"\r", b"-")
    body = body_of(part("file", content, "ahead.bin"), part("end", b"done"))
    # (in the file: the body's bytes from the part's first on)
    limit = len(body) - body.index(content)
    calls, spliced_now = stored_once(small_pipe, body, "ahead.bin", content)
    assert spliced_now >= len(content) - MiB
    assert len(calls) >= 4
    for (offset, length), (following, _) in zip(calls, calls[1:]):
        assert following == offset + length
    assert all(0 < length <= MiB for _, length in calls)
    first, end = calls[0][0], calls[-1][0] + calls[-1][1]
    assert end <= limit
    assert end - first >= spliced_now


def test_preallocation_unsupported_is_tried_once(tmp_path):
    # fallocate failing as unsupported: the upload is stored as without it,
    # and no later upload asks again.
    content = os.urandom(4 * MiB + 3)
    body = body_of(part("file", content, "u.bin"))
    with bridge(tmp_path, IZZATI_SPLICE_FALLOCATE="unsupported") as s:
        for _ in range(2):
            answer = post(s, body)
            assert answer.status_code == 200, answer.text
            result = answer.json()
            assert result["files"] == [file_entry("u.bin", content)]
            assert result["on_disk"] == [len(content)]
            assert len(result["fallocated"]) == 1
        assert result["spliced"] >= 2 * (len(content) - 2 * MiB)


def test_epilogue_after_the_last_part_is_ignored_as_before(server):
    content = os.urandom(3 * MiB)
    body = body_of(part("file", content, "e.bin")) + os.urandom(3 * MiB)
    answer = post(server, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["files"] == [file_entry("e.bin", content)]


def test_a_part_with_its_own_length_is_read_as_usual(server):
    content = os.urandom(3 * MiB)
    head = (
        b'--%s\r\nContent-Disposition: form-data; name="file"; filename="l.bin"\r\n'
        b"Content-Length: %d\r\n\r\n" % (BOUNDARY, len(content))
    )
    before = spliced(server)
    answer = post(server, head + content + b"\r\n--%s--\r\n" % BOUNDARY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["files"] == [file_entry("l.bin", content)]
    assert answer.json()["spliced"] == before


def test_truncated_body_is_a_400_with_nothing_left(server):
    # The final delimiter never comes: the last bytes are still read as usual,
    # and the parser says what is wrong.
    content = os.urandom(4 * MiB)
    body = part("file", content, "cut.bin")[:-2]
    answer = post(server, body)
    assert answer.status_code == 400
    assert "malformed multipart body" in answer.json()["error"]


# --- where splicing does not apply, or fails ----------------------------------


def test_chunked_upload_is_read_as_usual(server):
    content = os.urandom(5 * MiB)
    body = body_of(part("file", content, "chunked.bin"))
    before = spliced(server)

    def pieces():
        for i in range(0, len(body), 256 * KiB):
            yield body[i : i + 256 * KiB]

    answer = post(server, pieces())
    assert answer.status_code == 200, answer.text
    assert answer.json()["files"] == [file_entry("chunked.bin", content)]
    assert answer.json()["spliced"] == before


@pytest.mark.parametrize("side", ["socket", "file"])
def test_splice_failing_falls_back_with_nothing_lost(tmp_path, side):
    content = os.urandom(5 * MiB)
    body = body_of(part("note", b"kept"), part("file", content, "fallback.bin"))
    with bridge(tmp_path, IZZATI_SPLICE_FAIL=side) as s:
        answer = post(s, body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["text"] == {"note": "kept"}
        assert answer.json()["files"] == [file_entry("fallback.bin", content)]
        assert answer.json()["spliced"] == 0
        logged = (
            "splicing an upload failed (Invalid argument); uploads are read as "
            "usual from now on"
        )
        wait_for(lambda: logged in s.output, 5, what="the fallback logged")
        # The next upload on that server is read as usual without trying.
        again = post(s, body)
        assert again.json()["files"] == [file_entry("fallback.bin", content)]
        assert again.json()["spliced"] == 0
        assert s.output.count("splicing an upload failed") == 1


class _Held(Protocol):
    """A server protocol that hands itself to the test once connected."""

    def connectionMade(self):
        self.factory.made.callback(self)


class _Rewriting(ProtocolWrapper):
    """A wrapper that changes what is read."""

    def dataReceived(self, data):
        ProtocolWrapper.dataReceived(self, data.upper())


def _certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return DefaultOpenSSLContextFactory(str(key), str(cert))


@pytest.mark.parametrize("wrap", ["tcp", "limits", "tls", "rewriting"])
@pytest_twisted.ensureDeferred
async def test_only_plain_tcp_reads_are_taken(wrap, tmp_path):
    held = Factory.forProtocol(_Held)
    held.made = Deferred()
    factory = {
        "tcp": lambda f: f,
        "limits": WrappingFactory,
        "tls": lambda f: TLSMemoryBIOFactory(_certificate(tmp_path), False, f),
        "rewriting": lambda f: WrappingFactory(f),
    }[wrap](held)
    if wrap == "rewriting":
        factory.protocol = _Rewriting
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        channel = await held.made
        connection = plain_tcp_reader(channel)
        if wrap in ("tcp", "limits"):
            assert type(connection) is tcp.Server
            assert connection.protocol is (
                channel if wrap == "tcp" else channel.transport
            )
        else:
            assert connection is None
    finally:
        client.close()
        channel.transport.loseConnection()
        await port.stopListening()


def test_test_transports_are_read_as_usual():
    channel = Protocol()
    channel.makeConnection(StringTransport())
    assert plain_tcp_reader(channel) is None


# --- hostile clients, and what they cost the others ---------------------------


def test_client_leaving_mid_splice_leaves_nothing(server):
    pipes = server_pipes(server)
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=%s\r\n"
        b"Content-Length: %d\r\n\r\n" % (BOUNDARY, 512 * MiB)
    )
    before = spliced(server)
    s = socket.create_connection(("127.0.0.1", server.port()))
    s.sendall(head + part("file", b"", "gone.bin")[:-2] + os.urandom(8 * MiB))
    wait_for(lambda: spliced(server) > before, 10, what="splicing under way")
    # Others are served while the upload waits for the rest of its body.
    assert requests.get(server.url("/health"), timeout=5).status_code == 200
    s.close()
    wait_for(
        lambda: "izzati: upload from 127.0.0.1 ended after" in server.output,
        10,
        what="the early end logged",
    )
    wait_for(lambda: server_pipes(server) == pipes, 5, what="the pipe closed")
    assert os.listdir(server.env["TMPDIR"]) == []
    # Its reservation of the upload disk is given back: another upload of
    # the same size is let in (the default cap is 4 GiB).
    content = os.urandom(2 * MiB)
    answer = post(server, body_of(part("file", content, "after.bin")))
    assert answer.json()["files"] == [file_entry("after.bin", content)]


def test_huge_content_length_is_refused_before_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port()), timeout=10) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=%s\r\n"
            b"Content-Length: %d\r\n\r\n" % (BOUNDARY, 2**62)
        )
        assert s.recv(65536).startswith(b"HTTP/1.1 413 ")


def test_millions_of_tiny_parts_hit_the_part_limit(server):
    tiny = (
        b'--%s\r\nContent-Disposition: form-data; name="f"; filename="t"\r\n\r\nx\r\n'
    )
    body = tiny % BOUNDARY * 100_000 + b"--%s--\r\n" % BOUNDARY
    before = spliced(server)
    answer = post(server, body)
    assert answer.status_code == 413
    assert "multipart body over a limit" in answer.json()["error"]
    assert spliced(server) == before
    assert requests.get(server.url("/health"), timeout=5).status_code == 200


def test_slow_body_is_cut_while_splicing(tmp_path):
    args = ["--idle-timeout", "1", "--min-body-rate", "1M"]
    with bridge(tmp_path, *args) as s:
        conn = socket.create_connection(("127.0.0.1", s.port()), timeout=10)
        conn.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=%s\r\n"
            b"Content-Length: %d\r\n\r\n"
            % (BOUNDARY, 64 * MiB)
            + part("file", b"", "slow.bin")[:-2]
            + os.urandom(3 * MiB)
        )
        # Then a byte every 0.1 s: under 1 MiB/s over the 1 s window.
        conn.setblocking(False)
        answer = b""
        for _ in range(100):
            try:
                conn.send(b"x")
            except OSError:
                break
            time.sleep(0.1)  # sleep-ok: the trickle is the behaviour under test
            try:
                answer += conn.recv(65536)
            except BlockingIOError:
                pass
            if b"\r\n\r\n" in answer:
                break
        conn.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"request body too slow" in answer
        assert os.listdir(tmp_path) == []


def test_two_spliced_uploads_at_once(server):
    a, b = os.urandom(8 * MiB), os.urandom(8 * MiB)
    body_a = body_of(part("file", a, "a.bin"))
    body_b = body_of(part("file", b, "b.bin"))
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    first = http.client.HTTPConnection("127.0.0.1", server.port(), timeout=60)
    first.putrequest("POST", "/")
    first.putheader("Content-Type", headers["Content-Type"])
    first.putheader("Content-Length", str(len(body_a)))
    first.endheaders()
    first.send(body_a[: 4 * MiB])  # half of it, then another whole upload
    answer_b = post(server, body_b)
    assert answer_b.json()["files"] == [file_entry("b.bin", b)]
    first.send(body_a[4 * MiB :])
    response = first.getresponse()
    assert json.loads(response.read())["files"] == [file_entry("a.bin", a)]
    first.close()
