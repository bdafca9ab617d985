"""A real redis-server of the tests' own, and Igor clients for tests/broker."""

import json
import os
import shutil
import socket
import subprocess
import threading

import pytest
import websocket
from twisted.internet import defer

from twistbridge.testing import BridgeProcess, free_port, wait_for

from ..conftest import apps_environ

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """
    A redis-server on a free loopback port, in a temporary directory,
    persisting nothing; it can be killed and started again on its port.
    """

    def __init__(self, directory):
        self.directory = str(directory)
        self.port = free_port()
        self.socket = os.path.join(self.directory, "redis.sock")
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--unixsocket",
                self.socket,
                "--unixsocketperm",
                "700",
                "--bind",
                "127.0.0.1",
                "--dir",
                self.directory,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, 10, what=f"redis-server on port {self.port}")
        return self

    def ping(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16) == b"+PONG\r\n"
        except OSError:
            return False

    def command(self, *args, db=0):
        """Run one command in database C{db}; its reply (a bulk string's value)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            parts = []
            for command in (("SELECT", db), args):
                parts.append(f"*{len(command)}\r\n".encode())
                for arg in command:
                    arg = str(arg).encode()
                    parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
            s.sendall(b"".join(parts))
            replies = s.makefile("rb")
            assert replies.readline() == b"+OK\r\n"
            reply = replies.readline().rstrip(b"\r\n")
            if reply.startswith(b"$") and reply != b"$-1":
                reply = replies.readline().rstrip(b"\r\n")
            return reply

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def started_redis(directory):
    """
    A redis-server of its own (never the system's), started, its files in
    C{directory}; the test is skipped where none is installed.
    """
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(
            "redis-server is not installed (`make redis-deps` installs Debian's "
            "as root; it could not here)"
        )
    return RedisServer(directory).start()


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of this test's own."""
    server = started_redis(tmp_path)
    yield server
    server.kill()


class Instance(BridgeProcess):
    """tests/apps/broker_app.py under `twistd -n bridge --broker ...`."""

    def __init__(self, broker, extra=()):
        BridgeProcess.__init__(
            self,
            ["--app", "broker_app:bridge", "--broker", broker, *extra],
            env=apps_environ(),
        )

    def health(self):
        import requests

        return requests.get(self.url("/health"), timeout=5).json()


class Listener:
    """A websocket-client Igor connection whose messages a thread collects."""

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=10)
        self.messages = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                text = self.ws.recv()
            except Exception:
                return
            if not text:
                return
            with self.lock:
                self.messages.append(json.loads(text))

    def request(self, action, data=None, stream="s1"):
        self.ws.send(json.dumps({"streamId": stream, "action": action, "data": data}))

    def errors(self):
        """The messages that answer no stream (refusals)."""
        with self.lock:
            return [m for m in self.messages if "streamId" not in m]

    def token(self, count=1):
        """The resume token of the C{count}th resume_token message (waited for)."""
        tokens = wait_for(
            lambda: (lambda t: t if len(t) >= count else None)(
                [m["data"] for m in self.of("introduce_self", "resume_token")]
            ),
            10,
            what="a resume token",
        )
        return tokens[count - 1]

    def of(self, stream, action=None):
        with self.lock:
            return [
                m
                for m in self.messages
                if m.get("streamId") == stream
                and (action is None or m.get("action") == action)
            ]

    def call(self, action, data=None, stream="s1"):
        """The data of a stream's messages, once it closed."""
        self.request(action, data, stream)
        wait_for(
            lambda: any(m.get("close") for m in self.of(stream)),
            10,
            what=f"stream {stream} to close",
        )
        return [m["data"] for m in self.of(stream) if "data" in m]

    def close(self):
        self.ws.close()


@pytest.fixture
def listen():
    """listen(url) -> Listener; every one is closed after the test."""
    made = []

    def make(url):
        listener = Listener(url)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def instance_class():
    """The C{Instance} class, for a test that starts its own."""
    return Instance


def start_instances(redis_server, started, n=2, extra=()):
    """
    Start C{n} instances on C{redis_server}, appended to C{started} (which
    the caller stops), and wait until every instance of C{started} is
    connected to its broker; C{started}.
    """
    for _ in range(n):
        started.append(Instance(redis_server.url, extra).start())
    for instance in started:
        wait_for(
            lambda i=instance: i.health()["status"] == "ok",
            15,
            what="the broker connected",
        )
    return started


@pytest.fixture
def instances(redis_server):
    """Start instances sharing C{redis_server}: start(n) -> [Instance, ...]."""
    started = []
    yield lambda n=2, extra=(): start_instances(redis_server, started, n, extra)
    for instance in started:
        instance.stop()


def ws(instance):
    """The Igor WebSocket URL of C{instance}."""
    return instance.url("/ws", scheme="ws")


def holder_of(instances):
    """The instance running the relay process (as /health says), and the other."""

    def find():
        held = [i for i in instances if i.health()["broker"]["processes"] == ["relay"]]
        return held[0] if len(held) == 1 else None

    holder = wait_for(find, 15, what="one instance to hold the relay lease")
    (other,) = [i for i in instances if i is not holder]
    return holder, other


class StalledRedis:
    """Commands that answer only when the test says (a Redis that stalls)."""

    _ready = True

    def __init__(self):
        self.calls = []

    def _command(self, name, *args, **kwargs):
        d = defer.Deferred()
        self.calls.append((name, args, kwargs, d))
        return d

    def set(self, *args, **kwargs):
        return self._command("set", *args, **kwargs)

    def eval(self, *args, **kwargs):
        return self._command("eval", *args, **kwargs)

    def get(self, *args, **kwargs):
        return self._command("get", *args, **kwargs)
