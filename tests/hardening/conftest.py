"""Raw HTTP over a socket, for the hardening tests: the C{raw} fixture."""

import json
import socket
import types

import pytest

from twistbridge.testing import wait_for


def connect(server, name="http", timeout=10):
    host, port = server.addresses[name].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_response(sock, timeout=10):
    """Status line, headers (lower-cased names) and body of one response
    that ends with the connection or has a Content-Length."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    length = int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        body += chunk
    return lines[0].decode(), headers, body


def json_answer(sock, timeout=10):
    """C{(status code, JSON body, headers)} of one response."""
    status, headers, body = read_response(sock, timeout)
    return int(status.split()[1]), json.loads(body), headers


def health_ok(server):
    """/health answers 200 over a fresh connection."""
    sock = connect(server)
    try:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        status, _, _ = read_response(sock)
        return status == "HTTP/1.1 200 OK"
    finally:
        sock.close()


def wait_closed(sock, timeout=10):
    """Wait until the server has closed C{sock}; the bytes it sent meanwhile."""
    sock.settimeout(0.2)
    got = []

    def closed():
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        got.append(chunk)
        return chunk == b""

    wait_for(closed, timeout, what="server closing the connection")
    return b"".join(got)


@pytest.fixture(scope="session")
def raw():
    """The helpers above, as C{raw.connect(...)} etc."""
    return types.SimpleNamespace(
        connect=connect,
        read_response=read_response,
        json_answer=json_answer,
        health_ok=health_ok,
        wait_closed=wait_closed,
    )
