"""
Helpers for testing a bridge app the way users run it: a real C{twistd
bridge} process on ephemeral ports, with the addresses it bound::

    with BridgeProcess(["--app", "myapp:bridge"]) as server:
        requests.get(server.url("/health"))
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, TypeVar

T = TypeVar("T")

# Matches text lines and the rendered message of JSON lines alike.
_LISTENING = re.compile(r"\b(\w+) listening on ([^\s\",]+)")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """
    Poll C{condition} until it returns something true, and return that.

    @raise TimeoutError: after C{timeout} seconds, naming C{what}.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what or condition}"
            )
        time.sleep(interval)


def twistd_path() -> str:
    """The C{twistd} script beside the running interpreter."""
    candidate = os.path.join(os.path.dirname(sys.executable), "twistd")
    return candidate if os.path.exists(candidate) else "twistd"


_LISTENER_OPTIONS = (
    ("http", "--port"),
    ("igor", "--igor-port"),
    ("bgpy", "--bgpy-port"),
)


class BridgeProcess:
    """
    A C{twistd -n bridge} child process.  Unless the arguments say otherwise,
    every listener binds an ephemeral port on 127.0.0.1.

    Listeners named in C{closed} get no port option, and the process is not
    waited on to open them (an app that leaves them closed).

    @ivar addresses: listener name (C{http}, C{igor}, C{bgpy}) to
        C{"host:port"}, once the process logged it.
    @ivar output: everything the process printed so far.
    @ivar pidfile: where twistd writes its pid; L{stop} removes it if the
        process left it behind (killed or crashed).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        twistd_args: Sequence[str] = ("-n",),
        start_timeout: float = 30.0,
        closed: Sequence[str] = (),
    ) -> None:
        args = list(args)
        self.closed = set(closed)
        for name, option in _LISTENER_OPTIONS:
            if name in self.closed:
                continue
            if not any(a == option or a.startswith(option + "=") for a in args):
                args += [option, "0"]
        self.args = args
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.twistd_args = list(twistd_args)
        self.start_timeout = start_timeout
        self.addresses: Dict[str, str] = {}
        self.output = ""
        self.process: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self.pidfile = tempfile.mktemp(prefix="twistbridge-test-", suffix=".pid")

    def command(self) -> List[str]:
        """The full command line."""
        return [
            twistd_path(),
            *self.twistd_args,
            "--pidfile",
            self.pidfile,
            "bridge",
            *self.args,
        ]

    def start(self) -> BridgeProcess:
        """Start the process and wait until every listener is bound."""
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        expected = {
            name
            for name, option in _LISTENER_OPTIONS
            if self._option(option) != "none" and name not in self.closed
        }

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"twistd exited with {self.process.returncode}:\n{self.output}"
                )
            return expected <= set(self.addresses)

        wait_for(ready, self.start_timeout, what=f"listeners {sorted(expected)}")
        return self

    def _option(self, option: str) -> Optional[str]:
        for i, a in enumerate(self.args):
            if a == option and i + 1 < len(self.args):
                return self.args[i + 1]
            if a.startswith(option + "="):
                return a.split("=", 1)[1]
        return None

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self.output += line
                match = _LISTENING.search(line)
                if match:
                    self.addresses[match.group(1)] = match.group(2)

    def port(self, name: str = "http") -> int:
        """The port a listener bound."""
        return int(self.addresses[name].rsplit(":", 1)[1])

    def url(self, path: str = "/", scheme: str = "http", name: str = "http") -> str:
        """A URL on a listener, e.g. C{url("/health")}."""
        return f"{scheme}://{self.addresses[name]}{path}"

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send C{signum} to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, and return the exit status (killing it past C{timeout})."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(5)
        # (a twistd that was killed, or crashed, leaves its pid file behind)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pidfile)
        return self.process.returncode

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fuzz_examples(default: int) -> int:
    """
    How many examples a property-based test runs: C{default} in C{make test},
    multiplied by C{$TWISTBRIDGE_FUZZ_SCALE} in C{make fuzz}'s longer run.
    """
    return int(default * float(os.environ.get("TWISTBRIDGE_FUZZ_SCALE", "1")))


class JsonLinesClient:
    """
    A blocking client of the bgpy port's JSON-lines format (one JSON object
    a line each way), for tests and scripts::

        client = JsonLinesClient(server.addresses["bgpy"])
        client.call("EXEC", command="increase", value_change=10)
    """

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection(
            (host.strip("[]"), int(port)), timeout=timeout
        )
        self.file = self.sock.makefile("rb")

    def send(self, type_: str, **args: object) -> None:
        """Send C{{"type": type_, "args": args}}."""
        self.sock.sendall(json.dumps({"type": type_, "args": args}).encode() + b"\n")

    def line(self) -> dict:
        """Read the next line the server sent, decoded."""
        return json.loads(self.file.readline())

    def call(self, type_: str, **args: object) -> dict:
        """Send a message and return the server's answer to it."""
        self.send(type_, **args)
        return self.line()

    def close(self) -> None:
        """Close the connection."""
        self.file.close()
        self.sock.close()

    def __enter__(self) -> JsonLinesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on C{host} a moment ago (for a child to bind)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_alive(pid: int) -> bool:
    """
    Whether process C{pid} is alive: it exists and is not a zombie (a
    child that exited and was not reaped yet counts as gone), read from
    C{/proc} (Linux).  C{wait_for(lambda: not process_alive(pid), 10)}
    waits for a process to be gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
