"""
A hostile bgpy client cannot crash, freeze or bloat the daemon: real
sockets against `twistd -n bridge` with a token configured.
"""

import base64
import json
import pathlib
import pickle
import threading

import bgpy
from bgpy.core.message import Message, MessageType

from twistbridge.bgpy import token_create
from twistbridge.bgpy._connection import PRE_AUTH_LIMIT
from twistbridge.testing import wait_for

TOKEN = "isolation-t0ken"

SECURITY = (pathlib.Path(__file__).parents[2] / "docs" / "security.rst").read_text(
    "utf-8"
)

MEMO_30M = b"\x80\x04Nr" + (30_000_000).to_bytes(4, "little") + b"."
MEMO_MAX = b"\x80\x04Nr" + (2**32 - 1).to_bytes(4, "little") + b"."


def deep_tuple_key(depth=180_000):
    return b"\x80\x04}" + b")" + b"\x85" * depth + b"Ns."


def start(bridge_process, *args):
    return bridge_process(["--app", "bgpy_app:bridge", *args], BGPY_TOKEN=TOKEN)


def good_client_works(server):
    client = bgpy.Client(
        "127.0.0.1", server.port("bgpy"), token=TOKEN, log_level="CRITICAL"
    )
    answer = client.execute({"command": "get"}, await_response=True)
    assert answer["value"] == 1000 + answer["request_count"] - 1


def authenticate(r):
    """The bgpy format's AUTH exchange on a raw connection."""
    r.bgpy(
        pickle.dumps(
            Message(MessageType.AUTH, {"token": TOKEN, "await_response": True})
        )
    )
    assert r.frame().args == {"message": "Received 'AUTH'"}
    assert r.frame().args == {
        "message": "Authentication successful.",
        "await_response": False,
    }
    r.bgpy(pickle.dumps(Message(MessageType.OK, {"message": "Received 'OK'"})))


def vmrss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_bgpy_auth_frame_fits_the_cap_before_auth():
    message = Message(
        MessageType.AUTH, {"token": token_create(), "await_response": True}
    )
    frame = 16 + len(base64.encodebytes(pickle.dumps(message)))
    assert frame < 400 < PRE_AUTH_LIMIT == 4096


def test_hostile_pickles_before_and_after_auth(bridge_process, raw):
    server = start(bridge_process)
    port = server.port("bgpy")

    # Before AUTH the deep tuple is over the cap: refused from its header.
    r = raw(port)
    body = base64.encodebytes(deep_tuple_key())
    r.send(f"{len(body):<16}".encode() + body)
    refusal = (
        f"Message of {len(body)} bytes exceeds the limit of 4096 bytes before AUTH."
    )
    assert r.frame().args == {"message": refusal}
    assert r.closed()
    assert f"``{refusal}``" in SECURITY  # the example the manual gives

    # The memo frames are tiny: the vetter refuses them.
    for payload, index in ((MEMO_30M, 30_000_000), (MEMO_MAX, 2**32 - 1)):
        r = raw(port)
        r.bgpy(payload)
        assert len(r.sock.getsockname()) == 2
        assert r.refusal().args == {
            "message": f"Invalid message: BINPUT at byte 3: memo index {index} is "
            "not the next one (0)."
        }
        assert r.closed()

    # After AUTH the deep tuple reaches the vetter, which refuses it.
    r = raw(port)
    authenticate(r)
    r.bgpy(deep_tuple_key())
    assert r.refusal().args == {
        "message": "Invalid message: TUPLE1 at byte 103: nesting deeper than 100."
    }
    assert r.closed()

    good_client_works(server)
    assert server.process.poll() is None
    assert server.output.count("nesting deeper than 100") == 1  # logged once
    assert server.stop() in (0, -15)


def test_json_lines_are_capped_before_auth(bridge_process, raw):
    server = start(bridge_process)
    port = server.port("bgpy")
    r = raw(port)
    r.send(b'{"type": "AUTH", "args": {"token": "' + b"x" * 5000 + b'"}}\n')
    assert r.line() == {
        "type": "ERROR",
        "args": {"message": "Line exceeds the limit of 4096 bytes before AUTH."},
    }
    assert r.closed()

    # AUTH and a big EXEC in one write: the EXEC is split under the full limit.
    r = raw(port)
    big = json.dumps(
        {
            "type": "EXEC",
            "args": {"command": "get", "pad": "p" * 100_000, "await_response": True},
        }
    )
    r.send(
        json.dumps({"type": "AUTH", "args": {"token": TOKEN}}).encode()
        + b"\n"
        + big.encode()
        + b"\n"
    )
    assert r.line()["args"] == {"message": "Received 'AUTH'"}
    assert r.line()["args"] == {"message": "Authentication successful."}
    assert r.line()["args"] == {"message": "Received 'EXEC'"}
    assert r.line()["args"]["value"] == 1000
    assert server.stop() in (0, -15)


def test_pipelined_big_frames_are_held_in_bounded_memory(bridge_process, raw):
    server = start(bridge_process)
    pid = server.process.pid
    port = server.port("bgpy")
    flood = raw(port, timeout=60)
    authenticate(flood)
    body = base64.encodebytes(
        pickle.dumps(
            Message(MessageType.EXEC, {"command": "noop", "blob": b"x" * 4_200_000})
        )
    )
    frame = f"{len(body):<16}".encode() + body
    assert 5_600_000 < len(frame) < 5_800_000
    good_client_works(server)
    before = vmrss(pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vmrss(pid))
            done.wait(0.02)

    def send():
        try:
            flood.send(frame * 24)
        except OSError:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sender = threading.Thread(target=send, daemon=True)
    sampler.start()
    sender.start()
    try:
        # While the flood is being read, another client is answered.
        other = raw(port)
        other.json("AUTH", token=TOKEN)
        assert other.line()["args"] == {"message": "Received 'AUTH'"}
        assert other.line()["args"] == {"message": "Authentication successful."}
        other.json("EXEC", command="get", await_response=True)
        assert other.line()["args"] == {"message": "Received 'EXEC'"}
        assert other.line()["type"] == "OK"
        # every frame is answered in the end (the flood is not lost, only slowed)
        acks = []

        def answered():
            while len(acks) < 24:
                acks.append(flood.frame().args)
            return True

        wait_for(answered, 60, what="the 24 acknowledgements")
        assert acks == [{"message": "Received 'EXEC'"}] * 24
    finally:
        done.set()
        sender.join(60)
        sampler.join(5)
    growth = peak[0] - before
    print(f"RSS before {before / 2**20:.1f} MiB, peak {peak[0] / 2**20:.1f} MiB")
    assert growth < 64 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert server.stop() in (0, -15)


def test_one_decode_at_a_time_per_connection():
    """Big frames pipelined on one connection: one decode in the pool at a time."""
    from twisted.internet import defer
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from twistbridge import Bridge
    from twistbridge.bgpy._core import frame
    from twistbridge.bgpy._runtime import TaskRuntime
    from twistbridge.bgpy._service import BgpyFactory

    bridge = Bridge(port="none", igor_port="none", bgpy_port="none")
    calls = []

    def in_thread(func, *args):
        d = defer.Deferred()
        calls.append((func, args, d))
        return d

    bridge.offloader.in_thread = in_thread
    clock = Clock()
    protocol = BgpyFactory(
        TaskRuntime(bridge, bridge.offloader, clock), clock
    ).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    body = base64.encodebytes(
        pickle.dumps(Message(MessageType.EXEC, {"blob": b"x" * 300_000}))
    )
    protocol.dataReceived(frame(body) * 3)
    decodes = [c for c in calls if c[0].__name__ == "decode_frame"]
    assert len(decodes) == 1  # the other two wait their turn
    func, args, d = decodes[0]
    d.callback(func(*args))
    clock.advance(1)
    decodes = [c for c in calls if c[0].__name__ == "decode_frame"]
    assert len(decodes) == 2 and not decodes[1][2].called
    protocol.connectionLost(None)
