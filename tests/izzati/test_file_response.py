"""
file_return over real sockets: the sendfile path and the writes through the
request it falls back to when the socket is full, in order, on one keep-alive
connection; a client that goes away mid-file; a file that shrinks.
"""

import os
import re
import socket
from urllib.parse import urlencode

import pytest

from twistbridge.izzati._sender import CHUNK, SENT, SHORT, STOPPED, FileProducer
from twistbridge.testing import wait_for

pytestmark = pytest.mark.one_worker

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, izzati_app):
    with izzati_app(tmp_path_factory.mktemp("izzati-file-tmp")) as process:
        yield process


def post_form(sock, port, fields):
    body = urlencode(fields).encode()
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body)
    )


class Reader:
    """Reads HTTP/1.1 responses off one socket, in small pieces."""

    def __init__(self, sock, piece=4096):
        self.sock = sock
        self.piece = piece
        self.buffer = b""

    def _more(self):
        data = self.sock.recv(self.piece)
        assert data, "the server closed the connection"
        self.buffer += data

    def response(self):
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)\r?$", head).group(1))
        chunks = [self.buffer[:length]]
        got = len(chunks[0])
        self.buffer = self.buffer[length:]
        while got < length:
            data = self.sock.recv(min(self.piece, length - got))
            assert data, f"the server closed the connection after {got} bytes"
            chunks.append(data)
            got += len(data)
        return head.split(b"\r\n", 1)[0], b"".join(chunks)


def test_two_files_then_json_on_one_slow_connection(server, tmp_path):
    # A small receive buffer and small reads: the server's socket fills again
    # and again, so sendfile and the writes through the request alternate.
    first = tmp_path / "first.bin"
    second = tmp_path / "second.bin"
    first.write_bytes(os.urandom(3 * MiB + 17))
    second.write_bytes(os.urandom(MiB // 2 + 5))
    port = server.port()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    reader = Reader(sock)
    try:
        post_form(sock, port, {"action": "file", "path": str(first)})
        assert reader.response() == (b"HTTP/1.1 200 OK", first.read_bytes())
        post_form(sock, port, {"action": "file", "path": str(second)})
        assert reader.response() == (b"HTTP/1.1 200 OK", second.read_bytes())
        post_form(sock, port, {"action": "bytes"})
        assert reader.response() == (b"HTTP/1.1 200 OK", b"\x00\x01raw")
    finally:
        sock.close()
    wait_for(
        lambda: f'"POST / HTTP/1.1" 200 {3 * MiB + 17}' in server.output,
        10,
        what="the access log line of the first file",
    )
    assert f'"POST / HTTP/1.1" 200 {MiB // 2 + 5}' in server.output


def test_client_gone_mid_file(server, tmp_path):
    path = tmp_path / "gone.bin"
    path.write_bytes(os.urandom(64 * MiB))
    port = server.port()
    before = len(server.output)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        post_form(sock, port, {"action": "file", "path": str(path)})
        got = 0
        while got < 2 * MiB:
            data = sock.recv(65536)
            assert data
            got += len(data)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
    # The server serves the next client at once, and logged no error.
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        post_form(sock, port, {"action": "bytes"})
        assert Reader(sock).response() == (b"HTTP/1.1 200 OK", b"\x00\x01raw")
    finally:
        sock.close()
    wait_for(
        lambda: '"POST / HTTP/1.1" 200 5\n' in server.output[before:],
        10,
        what="the access log line of the next request",
    )
    later = server.output[before:]
    assert "Traceback" not in later
    assert "Producer was not unregistered" not in later
    assert "#error]" not in later and "#critical]" not in later


class FakeRequest:
    """What FileProducer uses of a request, without a connection."""

    channel = None
    producer = None
    _disconnected = False

    def __init__(self):
        self.closed = False
        self.sentLength = 0
        self.written = []
        self.unregistered = 0

    def registerProducer(self, producer, streaming):
        assert streaming is False
        self.producer = producer

    def unregisterProducer(self):
        self.unregistered += 1
        self.producer = None

    def write(self, data):
        self.sentLength += len(data)
        self.written.append(data)

    def loseConnection(self):
        self.closed = True


def run(producer, request):
    producer.start()
    while request.producer is not None:
        producer.resumeProducing()


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK - 7])
def test_producer_without_sendfile_sends_every_byte(tmp_path, size):
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    request = FakeRequest()
    outcomes = []
    with open(path, "rb") as f:
        run(FileProducer(request, f, size, outcomes.append), request)
    assert outcomes == [SENT]
    assert request.written[0] == b""  # the headers
    assert b"".join(request.written) == data
    assert max(map(len, request.written)) <= CHUNK
    assert (request.sentLength, request.unregistered) == (size, 1)
    assert request.closed is False


def test_producer_of_a_file_that_shrank_reports_it(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (CHUNK + 10))
    request = FakeRequest()
    outcomes = []
    with open(path, "rb") as f:
        producer = FileProducer(request, f, 2 * CHUNK, outcomes.append)
        run(producer, request)
    assert outcomes == [SHORT]
    assert (request.sentLength, producer.sent, request.unregistered) == (
        CHUNK + 10,
        CHUNK + 10,
        1,
    )
    assert request.closed is True


def test_producer_stopped_by_the_consumer(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * (3 * CHUNK))
    request = FakeRequest()
    outcomes = []
    with open(path, "rb") as f:
        producer = FileProducer(request, f, 3 * CHUNK, outcomes.append)
        producer.start()
        producer.resumeProducing()
        producer.stopProducing()
        producer.resumeProducing()
        producer.stopProducing()
    assert outcomes == [STOPPED]
    assert (request.sentLength, request.unregistered) == (CHUNK, 1)
