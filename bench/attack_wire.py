"""
The bgpy and Igor attacks of `bench/attacks.py` (the HTTP ones and the
helpers are in bench/attack_cases.py); same contract: each returns
C{{"got": short text, "refused": bool}}.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

from attack_cases import (
    MiB,
    connect,
    empties,
    http_head,
    http_status,
    read_answer,
    repeat,
    send_body,
    short,
)

from twistbridge.bgpy._core import frame
from twistbridge.bgpy._pickle import decode_frame

# --- bgpy ------------------------------------------------------------------


def bgpy_answer(sock, timeout=30.0):
    """The first answer on the bgpy port: an ERROR/OK text, or how it closed."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < 16:
            chunk = sock.recv(16 - len(data))
            if not chunk:
                return "<closed>" if not data else f"<closed after {data!r}>", False
            data += chunk
        if not data.strip().isdigit():
            return short(data + sock.recv(200)), False
        need = int(data)
        body = b""
        while len(body) < need:
            chunk = sock.recv(need - len(body))
            if not chunk:
                break
            body += chunk
    except socket.timeout:
        return f"<no answer in {timeout:.0f}s>", False
    except OSError as e:
        return f"<{type(e).__name__}>", False
    message = decode_frame(body)
    name = getattr(getattr(message, "type", None), "name", "?")
    text = getattr(message, "args", {}).get("message", "")
    return short(f"{name} {text}"), name == "ERROR"


def bgpy_frame_attack(address, body, repeat_count=1):
    """Send C{repeat_count} frames of base64 C{body}, read the first answer."""
    sock = connect(address)
    try:
        data = frame(body)
        try:
            for _ in range(repeat_count):
                sock.sendall(data)
        except OSError:
            pass
        got, refused = bgpy_answer(sock)
    finally:
        sock.close()
    return {"got": got, "refused": refused}


def deep_tuple_key(addrs, depth):
    """A protocol-2 pickle of {((((),),),...): None}, nested C{depth} deep."""
    pickle = b"\x80\x02}" + b")" + b"\x85" * depth + b"Ns."
    return bgpy_frame_attack(addrs["bgpy"], base64.b64encode(pickle))


def memo_index(addrs, index):
    """A 28-byte frame: NONE, LONG_BINPUT C{index}."""
    pickle = b"\x80\x02N" + b"r" + struct.pack("<I", index) + b"."
    return bgpy_frame_attack(addrs["bgpy"], base64.b64encode(pickle))


def pipelined_frames(addrs, count, size=5_700_000):
    """C{count} frames of C{size} base64 bytes, pipelined before AUTH."""
    return bgpy_frame_attack(addrs["bgpy"], b"A" * size, repeat_count=count)


def huge_length_header(addrs, length):
    """A header announcing C{length} bytes, then a trickle of body."""
    sock = connect(addrs["bgpy"])
    try:
        sock.sendall(f"{length:<16}".encode() + b"AAAA")
        got, refused = bgpy_answer(sock, timeout=15)
    finally:
        sock.close()
    return {"got": got, "refused": refused}


def json_lines_row(answer):
    """The row of a JSON-lines attack: the ERROR line when there is one."""
    lines = answer.splitlines()
    errors = [line for line in lines if b'"ERROR"' in line]
    return {"got": short(errors[0] if errors else answer), "refused": bool(errors)}


def deep_json_bgpy(addrs, depth):
    """A JSON line nested C{depth} deep on the bgpy port."""
    sock = connect(addrs["bgpy"])
    try:
        sock.sendall(
            b'{"type": "AUTH", "args": ' + b"[" * depth + b"]" * depth + b"}\n"
        )
        answer = read_answer(sock, timeout=30)
    finally:
        sock.close()
    return json_lines_row(answer)


# --- Igor ------------------------------------------------------------------


def ws_handshake(address, path="/"):
    """A raw WebSocket connection after a valid handshake, and the 101 line."""
    sock = connect(address)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        http_head(
            address,
            "GET",
            path,
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": key,
                "Sec-WebSocket-Version": "13",
            },
        )
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, data


def ws_frame(opcode, payload, fin):
    """One masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_answer(sock, timeout=30.0):
    """The first frame the server sends (the demo's clock ticks skipped)."""
    while True:
        got, refused = ws_frame_answer(sock, timeout)
        if not got.startswith('{"streamId":"clock"'):
            return got, refused


def ws_frame_answer(sock, timeout):
    """The next frame the server sends: its text, or the close code."""
    sock.settimeout(timeout)
    try:
        head = sock.recv(2)
        if len(head) < 2:
            return "<closed without a close frame>", False
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", sock.recv(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", sock.recv(8))[0]
        payload = b""
        while len(payload) < min(n, 4096):
            chunk = sock.recv(min(n, 4096) - len(payload))
            if not chunk:
                break
            payload += chunk
    except socket.timeout:
        return f"<no answer in {timeout:.0f}s>", False
    except OSError as e:
        return f"<{type(e).__name__}>", False
    if opcode == 8:
        code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        return short(f"close {code} {payload[2:].decode('utf-8', 'replace')}"), True
    return short(payload), b'"error"' in payload


def ws_fragments(addrs, count):
    """An echo message in C{count} two-byte fragments on the Igor port."""
    sock, reply = ws_handshake(addrs["igor"])
    try:
        if http_status(reply) != 101:
            return {"got": "handshake: " + short(reply), "refused": False}
        frames = [ws_frame(1, b'{"streamId":1,"action":"echo","data":"', False)]
        frames += [ws_frame(0, b"aa", False) for _ in range(count)]
        frames.append(ws_frame(0, b'"}', True))
        data = b"".join(frames)
        try:
            for i in range(0, len(data), 65536):
                sock.sendall(data[i : i + 65536])
        except OSError:
            pass
        got, refused = ws_answer(sock)
    finally:
        sock.close()
    return {"got": got, "refused": refused}


def igor_huge_handshake(addrs, total):
    """C{total} bytes of handshake headers without the blank line."""
    head = b"GET / HTTP/1.1\r\nHost: " + addrs["igor"].encode() + b"\r\n"
    answer, sent = send_body(
        addrs["igor"], head, repeat(b"X-Pad: " + b"p" * 1000 + b"\r\n", total), total
    )
    return {
        "got": f"{short(answer, 26)} after {sent / MiB:.1f} MiB",
        "refused": sent < total and http_status(answer) >= 400,
    }


def deep_json_igor(addrs, depth):
    """An Igor message nested C{depth} deep."""
    import websocket

    ws = websocket.create_connection(f"ws://{addrs['igor']}/", timeout=30)
    try:
        ws.send(
            '{"streamId": 1, "action": "echo", "data": '
            + "[" * depth
            + "]" * depth
            + "}"
        )
        while True:
            msg = ws.recv()
            if '"clock"' not in msg:
                break
    except Exception as e:
        return {"got": short(f"<{type(e).__name__}: {e}>"), "refused": True}
    finally:
        ws.close()
    return {"got": short(msg), "refused": '"error"' in msg}


def igor_session_sharing(addrs, _size):
    """Attacker (id N) introduces itself as N+1; does the next client share it?"""
    import websocket

    def call(ws, action, data=None):
        ws.send(json.dumps({"streamId": action, "action": action, "data": data}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("streamId") == action and "data" in msg:
                return msg["data"]
            if "error" in msg and msg.get("streamId") in (None, action):
                return {"error": msg["error"]}

    url = f"ws://{addrs['igor']}/"
    attacker = websocket.create_connection(url, timeout=15)
    victim = None
    try:
        n = call(attacker, "whoami")
        intro = None
        if isinstance(n, int):
            attacker.send(
                json.dumps(
                    {
                        "streamId": "i",
                        "action": "introduce_self",
                        "data": {"client_id": n + 1},
                    }
                )
            )
        after = call(attacker, "whoami")
        if after == n:
            intro = "refused"
        victim = websocket.create_connection(url, timeout=15)
        v = call(victim, "whoami")
        call(attacker, "session_put", "attacker-marker")
        seen = call(victim, "session_get")
        shared = seen == "attacker-marker"
        got = f"A={n}->{after}{'(' + intro + ')' if intro else ''} V={v} " + (
            "SHARED" if shared else "separate"
        )
        return {"got": short(got), "refused": not shared and v != after}
    finally:
        attacker.close()
        if victim is not None:
            victim.close()


def igor_big_message(addrs, total):
    """An Igor echo whose data is C{[[],[],...]}, about C{total} bytes."""
    import websocket

    ws = websocket.create_connection(f"ws://{addrs['igor']}/", timeout=60)
    try:
        ws.send(
            empties(total, b'{"streamId": 1, "action": "echo", "data": ', b"}").decode()
        )
        while True:
            msg = ws.recv()
            if '"clock"' not in msg[:40]:
                break
    except Exception as e:
        return {
            "got": short(f"<{type(e).__name__}: {e}>"),
            "refused": "close" in repr(e).lower(),
        }
    finally:
        ws.close()
    return {"got": short(msg), "refused": '"error"' in msg[:200]}


def bgpy_big_json_line(addrs, total):
    """A JSON line C{AUTH} holding C{[[],[],...]}, about C{total} bytes, before AUTH."""
    line = empties(total, b'{"type": "AUTH", "args": {"a": ', b"}}\n")
    pieces = (line[i : i + 65536] for i in range(0, len(line), 65536))
    # Sent piece by piece: the server may answer and close long before the end.
    answer, _ = send_body(addrs["bgpy"], b"", pieces, len(line))
    return json_lines_row(answer)
