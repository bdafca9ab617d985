"""Servers for the JSON-RPC tests: `twistd bridge` and the compatibility class."""

import json
import os
import re
import subprocess
import sys
import threading

import pytest
import requests

from twistbridge.testing import BridgeProcess, wait_for

from ..conftest import APPS, apps_environ

LISTENING = re.compile(r"\bhttp listening on (\S+)")
#: The mark of the modules on this file's session servers (bridge_server,
#: compat_server): they run in one xdist worker, so that each server starts
#: once a run, not once a worker.
ON_THE_SESSION_SERVERS = pytest.mark.xdist_group("jsonrpc-servers")


class CompatProcess:
    """`python tests/apps/jsonrpc_compat_app.py MODE` with the address it bound."""

    def __init__(self, mode="serve"):
        self.mode = mode
        self.output = ""
        self.address = None
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(APPS, "jsonrpc_compat_app.py"), self.mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=apps_environ(),
        )
        threading.Thread(target=self._read, daemon=True).start()

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"compat server exited:\n{self.output}")
            return self.address

        wait_for(ready, 30, what="compat server listening")
        return self

    def _read(self):
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            self.output += line
            match = LISTENING.search(line)
            if match and self.address is None:
                self.address = match.group(1)

    def url(self, path="/"):
        return f"http://{self.address}{path}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def bridge_server():
    server = BridgeProcess(
        [
            "--app",
            "jsonrpc_features_app:bridge",
            "--igor-port",
            "none",
            "--bgpy-port",
            "none",
            "--max-request-size",
            "64K",
        ],
        env=apps_environ(),
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def compat_server():
    server = CompatProcess().start()
    yield server
    server.stop()


@pytest.fixture(params=["bridge", "compat"])
def server(request):
    """Each test using it runs against `twistd bridge` and the compatibility class."""
    return request.getfixturevalue(f"{request.param}_server")


class Client:
    """A small `requests` helper: post(path, payload) -> (response, parsed JSON or None)."""

    def __init__(self, server):
        self.server = server
        self.session = requests.Session()

    def raw(self, path, data, headers=None, method="POST"):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.session.request(
            method, self.server.url(path), data=data, headers=h, timeout=10
        )

    def post(self, path, payload, headers=None):
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        response = self.raw(path, data, headers)
        is_json = response.headers.get("Content-Type", "").startswith(
            "application/json"
        )
        body = response.json() if response.content and is_json else None
        return response, body

    def call(self, method, *params, path="/rpc", **named):
        payload = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params or named:
            payload["params"] = named or list(params)
        response, body = self.post(path, payload)
        assert response.status_code == 200, response.text
        assert "error" not in body, body
        return body["result"]


@pytest.fixture
def client(server):
    c = Client(server)
    yield c
    c.session.close()
