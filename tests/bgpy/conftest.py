"""Fixtures for the bgpy tests: servers in subprocesses and a raw client."""

import base64
import json
import re
import socket
import subprocess
import sys
import threading

import pytest

from twistbridge.testing import BridgeProcess, wait_for

from ..conftest import APPS, environ_with

# The real bgpy client pickles task functions by module name: the tests
# import the task modules under the same names the servers do.
if APPS not in sys.path:
    sys.path.insert(0, APPS)

_LISTENING = re.compile(r"bgpy listening on 127\.0\.0\.1:(\d+)")


def apps_environ(**extra):
    return environ_with(APPS, drop=["BGPY_TOKEN"], **extra)


class Standalone:
    """`python -m twistbridge.bgpy server 127.0.0.1 0 ...` in a subprocess."""

    def __init__(self, *args, env=None):
        self.command = [
            sys.executable,
            "-m",
            "twistbridge.bgpy",
            "server",
            "127.0.0.1",
            "0",
            *args,
        ]
        self.env = env or apps_environ()
        self.output = ""
        self.port = None
        self.process = None

    def _read(self):
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            self.output += line
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(1))

    def __enter__(self):
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=APPS,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.output}")
            return self.port

        wait_for(ready, 20, what="the bgpy listener")
        return self

    def wait(self, timeout=10):
        return self.process.wait(timeout)

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(5)


@pytest.fixture
def standalone():
    """A factory of standalone servers (stopped after the test)."""
    servers = []

    def start(*args, **env):
        server = Standalone(*args, env=apps_environ(**env)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def environ():
    """apps_environ(**extra): an environment finding the test apps."""
    return apps_environ


@pytest.fixture
def bridge_process():
    """A factory of `twistd -n bridge` processes with the test apps importable."""
    servers = []

    def start(args=(), **env):
        server = BridgeProcess(
            ["--port", "none", "--igor-port", "none", *args], env=apps_environ(**env)
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Raw:
    """A raw socket speaking either wire format, for hostile and JSON tests."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buffer += chunk

    def line(self):
        while b"\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def json(self, type_, **args):
        self.send(json.dumps({"type": type_, "args": args}).encode() + b"\n")

    def frame(self):
        """One bgpy frame, unpickled with the real bgpy classes."""
        import pickle

        while len(self.buffer) < 16:
            self._fill()
        size = int(self.buffer[:16])
        while len(self.buffer) < 16 + size:
            self._fill()
        body, self.buffer = self.buffer[16 : 16 + size], self.buffer[16 + size :]
        return pickle.loads(base64.decodebytes(body))

    def bgpy(self, payload):
        """Send a bgpy frame whose pickle is `payload` (bytes)."""
        body = base64.encodebytes(payload)
        self.send(f"{len(body):<16}".encode() + body)

    def ack(self):
        """Acknowledge the last frame read, as bgpy's client does."""
        import pickle

        from bgpy.core.message import Message, MessageType

        self.bgpy(pickle.dumps(Message(MessageType.OK, {"message": "Received"})))

    def refusal(self):
        """
        The refusal of a frame that did not decode: the same error in both
        frames bgpy's client may read, the second acknowledged (so that the
        server closes now, not after waiting for the acknowledgement).
        """
        first, second = self.frame(), self.frame()
        assert (first.args, second.args["message"]) == (
            {"message": second.args["message"]},
            first.args["message"],
        )
        self.ack()
        return first

    def closed(self, timeout=10):
        """True once the server closed the connection (reading what is left)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


@pytest.fixture
def raw():
    """Open raw connections: raw(port) -> Raw; all closed after the test."""
    opened = []

    def connect(port, timeout=10):
        r = Raw(port, timeout)
        opened.append(r)
        return r

    yield connect
    for r in opened:
        r.close()
