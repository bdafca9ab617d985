"""
bgpy's own API on twistbridge, offered by L{twistbridge.bgpy} (see there
for the names and the command line): C{Server}, C{Client} and the README's
C{initialize} / C{execute} / C{terminate} helpers (start a background
server, initialize it with tasks, talk to it).

The server is twistbridge's bgpy protocol on its own reactor: many clients
are served at once, both wire formats (bgpy's and JSON lines) are spoken,
and pickles are read only through the restricted unpickler.  bgpy's own
C{Client} works against it unchanged, and this module's L{Client} works
against bgpy's own server too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

from twistbridge.bgpy._core import (
    BUFFER_TIME,
    HEADER_SIZE,
    Message,
    MessageType,
    ack,
    encode_bgpy,
)
from twistbridge.bgpy._core import (
    respond as respond,
)
from twistbridge.bgpy._pickle import decode_frame
from twistbridge.bgpy.core.environment import (
    ENV_TOKEN,
)
from twistbridge.bgpy.core.environment import (
    HOST as HOST,
)
from twistbridge.bgpy.core.environment import (
    PORT as PORT,
)
from twistbridge.bgpy.core.environment import (
    STARTUP_TIME as STARTUP_TIME,
)
from twistbridge.bgpy.core.token import token_create as token_create

__all__ = [
    "Client",
    "Server",
    "execute",
    "initialize",
    "terminate",
]


def _listen_description(host: str, port: int) -> str:
    from twistbridge.endpoints import endpoint_description

    if host in ("localhost", ""):
        host = "127.0.0.1"
    return endpoint_description((host, port))


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_reason(host: str, port: int) -> Optional[str]:
    """Why C{host:port} cannot be bound (C{address already in use}), if so."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        return (e.strerror or str(e)).lower()
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host or "127.0.0.1", port))
    except socket.gaierror as e:
        return f"unknown host ({e.strerror or e})"
    except OSError as e:
        return (e.strerror or str(e)).lower()
    finally:
        probe.close()
    return None


def _log_observers(log_level: str, log_file: Optional[str]) -> Any:
    """The observers of bgpy's C{--log-level} and C{--log-file}."""
    from twisted.logger import LogLevel, textFileLogObserver

    from twistbridge.logs import level_filtered

    names = {"warning": "warn", "fatal": "critical"}
    level_name = names.get(log_level.lower(), log_level.lower())
    try:
        level = LogLevel.levelWithName(level_name)
    except Exception:
        raise SystemExit(f"bgpy: invalid log level: {log_level}") from None
    observers = [textFileLogObserver(sys.stdout)]
    if log_file:
        observers.append(textFileLogObserver(open(log_file, "a", encoding="utf-8")))
    return level_filtered(observers, level)


class Server:
    """
    bgpy's C{Server}: a bgpy listener on C{host:port}.

    With C{init_file}, its tasks are loaded and C{init_task} runs at start;
    otherwise a client's C{initialize()} sends tasks, from modules in
    C{allow_modules} (the C{init_file}'s module is always allowed).  EXIT
    runs C{exit_task} and stops the server.

    @ivar token: the token clients must send; L{None} reads C{BGPY_TOKEN}.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: Optional[str] = None,
        log_level: str = "INFO",
        log_file: Optional[str] = None,
        init_file: Optional[str] = None,
        allow_modules: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.log_level = log_level
        self.log_file = None if log_file in (None, "None") else str(log_file)
        self.init_file = None if init_file in (None, "None") else str(init_file)
        self.allow_modules = tuple(allow_modules)

    def __repr__(self) -> str:
        return f"Server({self.host!r}, {self.port!r}, init_file={self.init_file!r})"

    def bridge(self) -> Any:
        """The L{twistbridge.Bridge} this server runs (bgpy listener only)."""
        from twistbridge.app import Bridge

        return Bridge(
            port="none",
            igor_port="none",
            bgpy_port=_listen_description(self.host, self.port),
            bgpy_init_file=self.init_file,
            bgpy_allow_module=self.allow_modules,
            bgpy_token=self.token,
        )

    def run(self) -> None:
        """
        Serve until a client sends EXIT (or the process is signalled).

        @raise SystemExit: with one line (C{bgpy server: cannot listen on
            HOST:PORT: REASON}) when the port cannot be bound.
        """
        from twisted.internet import reactor

        from twistbridge._compatrun import run_standalone

        observers = _log_observers(self.log_level, self.log_file)
        bridge = self.bridge()
        rt = bridge.runtime().bgpy
        rt.allow_modules.allow_option = "--allow-module"
        rt.allow_modules.token_option = "--token / BGPY_TOKEN"
        rt.on_exit = lambda: reactor.callLater(0, reactor.stop)

        def reason_of(error: Any) -> str:
            return _bind_reason(self.host, self.port) or str(error).rpartition(": ")[2]

        run_standalone(
            "bgpy server",
            lambda listener: _address(self.host, self.port),
            bridge.service(),
            observers=observers,
            reason_of=reason_of,
        )

    def run_background(self, timeout: float = 10.0) -> subprocess.Popen:
        """
        Start C{python -m twistbridge.bgpy server ...} in the background (it
        outlives this process) and return once it accepts connections.
        """
        command = [
            sys.executable,
            "-m",
            "twistbridge.bgpy",
            "server",
            self.host,
            str(self.port),
        ]
        command += ["--log-level", self.log_level]
        if self.log_file:
            command += ["--log-file", self.log_file]
        if self.init_file:
            command += ["--init-file", self.init_file]
        for module in self.allow_modules:
            command += ["--allow-module", module]
        env = dict(os.environ)
        if self.token is not None:
            env[ENV_TOKEN] = self.token
        # The server imports allowed task modules the way this process does.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        process = subprocess.Popen(command, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"bgpy server exited with status {process.returncode}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return process
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"bgpy server not listening after {timeout}s"
                    ) from None
                time.sleep(0.05)


class _Connection:
    """One blocking client connection speaking bgpy's wire format."""

    def __init__(self, host: str, port: int, timeout: Optional[float]) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._sent_last = False

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(BUFFER_TIME * 10)
            while self.sock.recv(4096):
                pass
        except OSError:
            pass
        self.sock.close()

    def _write(self, message: Message) -> None:
        if self._sent_last:
            # bgpy's own server reads one frame per read: never let two of
            # our frames meet in its buffer.
            time.sleep(BUFFER_TIME)
        self.sock.sendall(encode_bgpy(message))
        self._sent_last = True

    def _read_exactly(self, size: int) -> Optional[bytes]:
        chunks = []
        while size:
            chunk = self.sock.recv(min(size, 1 << 16))
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def read(self) -> Optional[Message]:
        header = self._read_exactly(HEADER_SIZE)
        if header is None:
            return None
        body = self._read_exactly(int(header))
        if body is None:
            return None
        self._sent_last = False
        message = decode_frame(body)
        if not isinstance(message, Message):
            raise ConnectionError(
                f"bgpy server sent an invalid message: {message.message}"
            )
        return message

    def send(self, message: Message, await_response: bool = False) -> Optional[Message]:
        """bgpy's C{ClientSocket.send}: the acknowledgement, or the response."""
        message.args["await_response"] = await_response
        self._write(message)
        answer = self.read()
        if answer is None or not await_response:
            return answer
        response = self.read()
        if response is not None:
            self._write(ack(response.type))
        return response


class Client:
    """
    bgpy's C{Client}: each call opens a connection, authenticates, sends
    one message and returns the answer's arguments.

    @ivar token: the token to send; L{None} reads C{BGPY_TOKEN}.
    @ivar timeout: socket timeout in seconds (L{None}: wait as bgpy does).
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: Optional[str] = None,
        log_level: str = "INFO",
        log_file: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.token = token if token is not None else os.environ.get(ENV_TOKEN)
        self.log_level = log_level
        self.log_file = log_file
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.host!r}, {self.port!r})"

    def _call(self, message: Message, await_response: bool) -> Optional[Dict[str, Any]]:
        connection = _Connection(self.host, self.port, self.timeout)
        try:
            answer = connection.send(
                Message(MessageType.AUTH, {"token": self.token}), await_response=True
            )
            if answer is not None and answer.type is MessageType.OK:
                answer = connection.send(message, await_response=await_response)
        finally:
            connection.close()
        return None if answer is None else answer.args

    def initialize(
        self,
        init_task: Callable[..., Any],
        exec_task: Callable[..., Any],
        exit_task: Callable[..., Any],
    ) -> Optional[Dict[str, Any]]:
        """Send the tasks (by reference: their module must be allowed)."""
        args = {"init_task": init_task, "exec_task": exec_task, "exit_task": exit_task}
        return self._call(Message(MessageType.INIT, args), await_response=True)

    def execute(self, exec_args: Dict[str, Any], await_response: bool = False) -> Any:
        """Send EXEC with C{exec_args} to C{exec_task}."""
        return self._call(Message(MessageType.EXEC, dict(exec_args)), await_response)

    def terminate(
        self, exit_args: Optional[Dict[str, Any]] = None, await_response: bool = False
    ) -> Any:
        """Send EXIT: C{exit_task} runs (the standalone server then stops)."""
        return self._call(
            Message(MessageType.EXIT, dict(exit_args or {})), await_response
        )


def initialize(
    init_task: Callable[..., Any],
    exec_task: Callable[..., Any],
    exit_task: Callable[..., Any],
    host: str = HOST,
    port: int = PORT,
    token: Optional[str] = None,
    log_level: str = "INFO",
    log_file: Optional[str] = None,
) -> Optional[Dict[str, Any]]:
    """
    The README's C{initialize}: start a background server on C{host:port}
    that allows the tasks' modules, and send it the tasks.
    """
    modules = sorted({f.__module__ for f in (init_task, exec_task, exit_task)})
    Server(
        host, port, token, log_level, log_file, allow_modules=modules
    ).run_background()
    return Client(host, port, token).initialize(init_task, exec_task, exit_task)


def execute(
    exec_args: Dict[str, Any],
    host: str = HOST,
    port: int = PORT,
    token: Optional[str] = None,
    await_response: bool = False,
) -> Any:
    """The README's C{execute}: one EXEC to the server at C{host:port}."""
    return Client(host, port, token).execute(exec_args, await_response=await_response)


def terminate(
    exit_args: Optional[Dict[str, Any]] = None,
    host: str = HOST,
    port: int = PORT,
    token: Optional[str] = None,
    await_response: bool = False,
) -> Any:
    """The README's C{terminate}: EXIT, which stops the background server."""
    return Client(host, port, token).terminate(exit_args, await_response=await_response)
