"""Servers and a small websocket-client helper for the Igor tests."""

import json
import os
import re
import subprocess
import sys
import threading

import pytest
import websocket

from twistbridge.testing import BridgeProcess, wait_for

from ..conftest import APPS, apps_environ

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # the shared fakes: `from fakes import ...`


class CompatProcess:
    """tests/apps/igor_compat_server.py (IgorServer.run_forever) in a child process."""

    def __init__(self, **env):
        self.env = apps_environ(IGOR_PORT="0", **env)
        self.output = ""
        self.address = None
        self.process = None
        self.argv_script = "igor_compat_server.py"

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(APPS, self.argv_script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        threading.Thread(target=self._read, daemon=True).start()

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.output}")
            return self.address

        wait_for(ready, 30, what="IgorServer listening")
        return self

    def _read(self):
        for raw in self.process.stdout:
            self.output += raw.decode("utf-8", "replace")
            match = re.search(r"igor listening on (\S+)", self.output)
            if match and self.address is None:
                self.address = match.group(1)

    def url(self, path="/"):
        return f"ws://{self.address}{path}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class TwistdServer(BridgeProcess):
    """igor_test_app:bridge under `twistd -n bridge`."""

    def __init__(self, app="igor_test_app:bridge", args=()):
        BridgeProcess.__init__(self, ["--app", app, *args], env=apps_environ())

    def url(self, path="/", scheme="ws", name="igor"):
        return BridgeProcess.url(self, path, scheme, name)


@pytest.fixture(scope="module")
def twistd_server():
    with TwistdServer() as server:
        yield server


@pytest.fixture(scope="module")
def compat_server():
    with CompatProcess(IGOR_SESSION_TIMEOUT="0.5") as server:
        yield server


@pytest.fixture(params=["twistd-igor-port", "twistd-ws", "IgorServer"])
def url(request):
    """An Igor URL: the standalone port and /ws of twistd, and IgorServer."""
    if request.param == "IgorServer":
        return request.getfixturevalue("compat_server").url()
    server = request.getfixturevalue("twistd_server")
    if request.param == "twistd-ws":
        return server.url("/ws", name="http")
    return server.url()


class Client:
    """A websocket-client connection speaking Igor's JSON."""

    def __init__(self, url, **options):
        options.setdefault("timeout", 10)
        self.ws = websocket.create_connection(url, **options)

    def send(self, message):
        self.ws.send(
            message if isinstance(message, (str, bytes)) else json.dumps(message)
        )

    def recv(self):
        return json.loads(self.ws.recv())

    def request(self, action, data=None, stream="s1"):
        self.send({"streamId": stream, "action": action, "data": data})

    def call(self, action, data=None, stream="s1"):
        """Send an action; return every message of its stream up to the close."""
        self.request(action, data, stream)
        return self.until_close(stream)

    def until_close(self, stream):
        messages = []
        while True:
            message = self.recv()
            if message.get("streamId") != stream:
                continue
            messages.append(message)
            if message.get("close"):
                return messages

    def close(self):
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def connect():
    """connect(url, **websocket_options) -> Client; every client is closed after the test."""
    clients = []

    def make(url, **options):
        client = Client(url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        try:
            client.close()
        except Exception:
            pass


@pytest.fixture
def client_class():
    return Client


@pytest.fixture
def servers():
    """The server classes, for tests that need a server of their own."""

    class Servers:
        twistd = TwistdServer
        compat = CompatProcess

    return Servers
