"""
The frames Igor writes, read byte for byte from a raw socket: every length
encoding of RFC 6455 (7-bit, 16-bit, 64-bit), with the payload boundaries
on both sides, on the standalone port and on /ws.
"""

import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.one_worker


class RawClient:
    """A WebSocket client that reads the server's frames as bytes."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {parts.path or '/'} HTTP/1.1\r\n"
                f"Host: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _recv(self):
        data = self.sock.recv(1 << 20)
        assert data, "the server closed the connection"
        return data

    def _take(self, n):
        while len(self.buffer) < n:
            self.buffer += self._recv()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send_text(self, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def frame(self):
        """The next frame: (its header bytes, its payload)."""
        first = self._take(2)
        n = first[1] & 0x7F
        extra = b""
        if n == 126:
            extra = self._take(2)
            n = struct.unpack("!H", extra)[0]
        elif n == 127:
            extra = self._take(8)
            n = struct.unpack("!Q", extra)[0]
        return first + extra, self._take(n)

    def close(self):
        self.sock.close()


def expected_header(n):
    if n < 126:
        return bytes([0x81, n])
    if n < 65536:
        return bytes([0x81, 126]) + n.to_bytes(2, "big")
    return bytes([0x81, 127]) + n.to_bytes(8, "big")


@pytest.fixture(params=["igor-port", "ws"])
def raw_url(request, twistd_server):
    if request.param == "ws":
        return twistd_server.url("/ws", name="http")
    return twistd_server.url()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_text_frame_headers_for_every_length(raw_url, size):
    client = RawClient(raw_url)
    try:
        # The reply's overhead beside its data string, measured once.
        client.send_text(b'{"streamId": "s", "action": "echo", "data": ""}')
        header, empty = client.frame()
        overhead = len(empty)
        assert header == expected_header(overhead)
        assert json.loads(empty) == {"streamId": "s", "data": ""}
        assert client.frame() == (
            expected_header(len(b'{"streamId":"s","close":true}')),
            b'{"streamId":"s","close":true}',
        )
        data = "x" * max(0, size - overhead)
        client.send_text(
            json.dumps({"streamId": "s", "action": "echo", "data": data}).encode()
        )
        header, payload = client.frame()
        assert len(payload) == overhead + len(data)
        assert header == expected_header(len(payload))
        assert json.loads(payload) == {"streamId": "s", "data": data}
        assert json.loads(client.frame()[1]) == {"streamId": "s", "close": True}
    finally:
        client.close()


# autobahn says where: the index of the first invalid byte (\xff).
REASON = (
    b"encountered invalid UTF-8 while processing text message at payload octet index 45"
)


def test_invalid_utf8_in_a_text_frame_closes_with_1007(raw_url):
    client = RawClient(raw_url)
    try:
        client.send_text(b'{"streamId": "s", "action": "echo", "data": "\xff\xfe"}')
        header, payload = client.frame()
        assert header[0] == 0x88  # a close frame
        assert (int.from_bytes(payload[:2], "big"), payload[2:]) == (1007, REASON)
    finally:
        client.close()
