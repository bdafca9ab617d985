"""
--max-upload-disk: the temporary disk all in-flight uploads hold together
is capped; an upload that would go over is refused (from its Content-Length,
or mid-stream when chunked, its temporary file deleted) while the others go
on.  Real sockets, with a small cap.
"""

import os
import select

import pytest
import requests

from twistbridge.testing import BridgeProcess, wait_for

pytestmark = pytest.mark.one_worker

KiB = 1024
MiB = 1024 * KiB
CAP = 3 * MiB
BOUNDARY = b"xyzzy"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    args = ["--max-upload-disk", "3M", "--igor-port", "none", "--bgpy-port", "none"]
    tmp = str(tmp_path_factory.mktemp("uploads"))
    with BridgeProcess(args, env=dict(os.environ, TMPDIR=tmp)) as s:
        s.tmp = tmp
        yield s


def temp_files(server):
    """How many temporary files (anonymous: deleted) the server holds open."""
    fds = f"/proc/{server.process.pid}/fd"
    found = 0
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)).startswith(server.tmp + "/"):
                found += 1
        except OSError:
            pass
    return found


def part_head(name="big.bin"):
    return (
        b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" % (BOUNDARY, name.encode())
    )


def part_tail():
    return b"\r\n--%s--\r\n" % BOUNDARY


def start_upload(raw, server, length=None):
    sock = raw.connect(server)
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=%s\r\n" % BOUNDARY
    )
    head += (
        b"Content-Length: %d\r\n" % length
        if length is not None
        else b"Transfer-Encoding: chunked\r\n"
    )
    sock.sendall(head + b"\r\n")
    return sock


def full_message(used, size=None):
    wanted = "this upload" if size is None else f"an upload of {size} bytes"
    return {
        "error": f"no room for {wanted}: uploads in progress hold {used} of the "
        f"{CAP} bytes of temporary disk (--max-upload-disk); "
        "retry later, or send a smaller upload"
    }


def upload(server, size):
    files = {"file": ("f.bin", b"x" * size, "application/octet-stream")}
    return requests.post(server.url("/"), files=files, timeout=30)


def test_a_content_length_over_what_is_left_is_refused_up_front(raw, server):
    sock = start_upload(raw, server, 4 * MiB)
    code, body, headers = raw.json_answer(sock)
    assert (code, body) == (507, full_message(0, 4 * MiB))
    assert headers["retry-after"] == "10"


def test_the_cap_is_shared_and_others_go_on(raw, server):
    data = part_head() + b"x" * (2 * MiB)
    length = len(data) + len(part_tail())
    held = start_upload(raw, server, length)
    held.sendall(data[:MiB])  # in flight, 2 MiB and a bit reserved
    wait_for(lambda: temp_files(server) == 1, 10, what="the held upload's temp file")

    second = start_upload(raw, server, length)
    assert raw.json_answer(second)[:2] == (507, full_message(length, length))

    # A small one fits beside it.
    answer = upload(server, 512 * KiB)
    assert answer.status_code == 200
    assert answer.json()["files"] == [{"filename": "f.bin", "size": 512 * KiB}]

    # A chunked one is cut when it crosses the cap, its temp file deleted.
    chunked = start_upload(raw, server)
    chunk = b"x" * (64 * KiB)
    chunked.sendall(b"%x\r\n%s\r\n" % (len(part_head()), part_head()))
    sent = 0
    while sent < 32 * MiB and not select.select([chunked], [], [], 0)[0]:
        chunked.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
    assert sent < 8 * MiB
    code, body, _ = raw.json_answer(chunked)
    assert code == 507
    # What it held itself counts too: somewhere between the other's and the cap.
    used = int(body["error"].split(" hold ")[1].split()[0])
    assert length < used <= CAP
    assert body == full_message(used)
    wait_for(
        lambda: temp_files(server) == 1, 10, what="the cut upload's temp file gone"
    )

    # The held upload completes as if nothing happened.
    held.sendall(data[MiB:] + part_tail())
    code, body, _ = raw.json_answer(held)
    assert code == 200
    assert body["files"] == [{"filename": "big.bin", "size": 2 * MiB}]
    wait_for(lambda: temp_files(server) == 0, 10, what="temp files released")

    # And the whole cap is free again.
    answer = upload(server, 2 * MiB + 512 * KiB)
    assert answer.status_code == 200
