"""
The HTTP attacks of `bench/attacks.py` and the helpers of all (the bgpy and
Igor ones are in bench/attack_wire.py), one function each, run in a process of
their own.  Each takes the server's addresses and a size, and returns
C{{"got": short text, "refused": bool}}: what the attacker received, and
whether that was a clear refusal (an HTTP 4xx/5xx before the whole body was
taken, a bgpy C{ERROR}, a WebSocket close or error...).
"""

from __future__ import annotations

import json
import select
import socket
import time

MiB = 1024 * 1024


def _addr(address):
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def connect(address, timeout=30.0, source=None):
    """A TCP connection to C{"host:port"}, optionally from C{source}."""
    return socket.create_connection(
        _addr(address), timeout=timeout, source_address=(source, 0) if source else None
    )


def read_answer(sock, timeout=30.0, limit=4096):
    """What the peer sends within C{timeout}, up to C{limit} bytes or its close."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(limit - len(data))
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data or data.endswith(b"\n"):
                sock.settimeout(0.3)  # the rest of an answer already under way
    except socket.timeout:
        pass
    except OSError as e:
        if not data:
            return f"<{type(e).__name__}>".encode()
    return data


def short(data, n=44):
    """The first line of C{data}, printable, cut to C{n} characters."""
    if isinstance(data, bytes):
        data = data.decode("latin-1")
    line = data.split("\r\n", 1)[0].split("\n", 1)[0] if data else "<closed, nothing>"
    return line if len(line) <= n else line[: n - 1] + "~"


def http_status(data):
    """The status code of an HTTP answer, or 0."""
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and data.startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return 0


def send_body(address, head, pieces, total, source=None):
    """
    Send C{head}, then C{pieces} (an iterable of bytes) until the server
    answers or closes; return C{(answer, bytes_of_body_sent)}.
    """
    sock = connect(address, source=source)
    sent = 0
    try:
        sock.sendall(head)
        for piece in pieces:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        answer = read_answer(sock, timeout=60.0)
    finally:
        sock.close()
    return answer, sent


def repeat(piece, total):
    """C{piece} repeated until C{total} bytes are produced (the last one cut)."""
    left = total
    while left > 0:
        yield piece[:left]
        left -= len(piece)


def chunked(piece, total):
    """C{total} bytes as HTTP chunks of C{piece}, then the last chunk."""
    for part in repeat(piece, total):
        yield b"%x\r\n" % len(part) + part + b"\r\n"
    yield b"0\r\n\r\n"


def http_head(address, method, path, headers, host=None):
    """An HTTP/1.1 request head."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or address}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def body_row(answer, sent, total):
    """A row for a big-body attack: refused when an error came before it all went."""
    status = http_status(answer)
    return {
        "got": f"{short(answer, 26)} after {sent / MiB:.1f}/{total / MiB:.0f} MiB",
        "refused": status >= 400 and sent < total,
    }


# --- HTTP ------------------------------------------------------------------


def form_body(addrs, total):
    """A urlencoded form of C{a&a&...}, C{total} bytes, to POST /."""
    head = http_head(
        addrs["http"],
        "POST",
        "/",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": total},
    )
    answer, sent = send_body(addrs["http"], head, repeat(b"a&" * 32768, total), total)
    return {"got": short(answer), "refused": http_status(answer) >= 400}


def rpc_batch_of_empties(addrs, total):
    """A text/plain JSON-RPC body C{[[],[],...]} of about C{total} bytes."""
    body = empties(total)
    head = http_head(
        addrs["http"],
        "POST",
        "/rpc",
        {"Content-Type": "text/plain", "Content-Length": len(body)},
    )
    answer, _ = send_body(addrs["http"], head, repeat(body, len(body)), len(body))
    status = http_status(answer)
    tail = answer.split(b"\r\n\r\n", 1)[-1]
    return {
        "got": short(answer, 16) + " " + short(tail, 28),
        "refused": status >= 400 or b'"error"' in tail[:400],
    }


def deep_json_rpc(addrs, depth):
    """A JSON-RPC body nested C{depth} deep."""
    body = b"[" * depth + b"]" * depth
    head = http_head(
        addrs["http"],
        "POST",
        "/rpc",
        {"Content-Type": "application/json", "Content-Length": len(body)},
    )
    answer, _ = send_body(addrs["http"], head, [body], len(body))
    tail = answer.split(b"\r\n\r\n", 1)[-1]
    return {
        "got": short(answer, 16) + " " + short(tail, 28),
        "refused": http_status(answer) >= 400 or b'"error"' in tail,
    }


def chunked_post(addrs, path, total):
    """A chunked POST of C{total} bytes to C{path}, with no credentials."""
    head = http_head(
        addrs["http"],
        "POST",
        path,
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    answer, sent = send_body(
        addrs["http"], head, chunked(b"x" * (256 * 1024), total), total + 5
    )
    return body_row(answer, sent, total)


def chunked_bgpy_exec(addrs, total):
    """C{total} chunked bytes to /bgpy/exec without a token."""
    return chunked_post(addrs, "/bgpy/exec", total)


def chunked_unknown_path(addrs, total):
    """C{total} chunked bytes to a path nothing serves."""
    return chunked_post(addrs, "/no/such/path", total)


def huge_content_length(addrs, length):
    """POST /rpc announcing C{length} bytes, then 64 KiB of them."""
    head = http_head(
        addrs["http"],
        "POST",
        "/rpc",
        {"Content-Type": "application/json", "Content-Length": length},
    )
    answer, sent = send_body(addrs["http"], head, repeat(b"x" * 65536, 65536), length)
    return {"got": short(answer), "refused": http_status(answer) in (400, 413)}


def foreign_host(addrs, _size):
    """Host: attacker.example on POST /rpc, GET /health, GET /bgpy/state."""
    statuses = []
    rpc = json.dumps(
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}
    ).encode()
    for method, path, body in (
        ("POST", "/rpc", rpc),
        ("GET", "/health", b""),
        ("GET", "/bgpy/state", b""),
    ):
        headers = (
            {"Content-Type": "application/json", "Content-Length": len(body)}
            if body
            else {}
        )
        head = http_head(addrs["http"], method, path, headers, host="attacker.example")
        answer, _ = send_body(addrs["http"], head, [body] if body else [], len(body))
        statuses.append(http_status(answer))
    return {
        "got": "rpc/health/state: " + "/".join(map(str, statuses)),
        "refused": all(400 <= s < 500 for s in statuses),
    }


def slow_body(addrs, seconds):
    """Complete headers of a 1000-byte body, then one byte every 2 s, for C{seconds}."""
    head = http_head(
        addrs["http"],
        "POST",
        "/rpc",
        {"Content-Type": "application/json", "Content-Length": 1000},
    )
    return trickled(addrs, head, b"[" * 1000, 2.0, seconds)


def trickle(sock, data, interval, seconds):
    """Send C{data} a byte every C{interval} s; True once the server closed."""
    deadline = time.monotonic() + seconds
    for i in range(len(data)):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return True
        try:
            sock.sendall(data[i : i + 1])
        except OSError:
            return True
        if time.monotonic() > deadline:
            return False
        # The pace is the attack itself, not synchronisation.
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            return True
    return False


def slowloris(addrs, seconds):
    """A request head sent one byte a second, for at most C{seconds}."""
    return trickled(
        addrs, b"", b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 1000, 1.0, seconds
    )


def trickled(addrs, head, data, interval, seconds):
    """The row of a trickle attack: C{head} at once, then C{data} byte by byte."""
    sock = connect(addrs["http"])
    started = time.monotonic()
    try:
        if head:
            sock.sendall(head)
        cut = trickle(sock, data, interval, seconds)
        answer = read_answer(sock, timeout=1) if cut else b""
    finally:
        sock.close()
    took = time.monotonic() - started
    if not cut:
        return {"got": f"still open after {took:.0f}s", "refused": False}
    return {"got": f"cut after {took:.0f}s: {short(answer, 24)}", "refused": True}


def many_connections(addrs, count):
    """C{count} connections to the HTTP port from 127.0.0.2 (one client address)."""
    socks, closed = [], 0
    try:
        for _ in range(count):
            socks.append(connect(addrs["http"], timeout=10, source="127.0.0.2"))
        time.sleep(1.0)  # sleep-ok: let the server refuse the extra ones
        for s in socks:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                try:
                    data = s.recv(1024, socket.MSG_PEEK)
                except OSError:
                    data = b""
                closed += 1 if not data or http_status(data) >= 400 else 0
    finally:
        for s in socks:
            s.close()
    return {"got": f"{count} opened, {closed} refused", "refused": closed > 0}


def empties(total, prefix=b"", suffix=b""):
    """C{prefix}, a JSON array C{[[],[],...]}, C{suffix}: about C{total} bytes."""
    n = max(1, (total - len(prefix) - len(suffix) - 2) // 3)
    return prefix + b"[" + b"[]," * (n - 1) + b"[]]" + suffix


def izzati_json_body(addrs, total):
    """An izzati JSON body C{{"a": [[],[],...]}} of about C{total} bytes."""
    body = empties(total, b'{"a": ', b"}")
    head = http_head(
        addrs["http"],
        "POST",
        "/",
        {"Content-Type": "application/json", "Content-Length": len(body)},
    )
    answer, _ = send_body(addrs["http"], head, repeat(body, len(body)), len(body))
    return {"got": short(answer), "refused": http_status(answer) >= 400}
