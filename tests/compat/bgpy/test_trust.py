"""
Who may name which task functions, attacked with the real bgpy Client and
raw bgpy frames: a token holder may name any importable module's plain
functions; nobody else makes the server import anything; an explicit
--allow-module list wins; builtins, C functions, classes and calls during
unpickling are refused to everyone, and other clients are unaffected.
"""

import base64
import io
import math
import pickle
import socket

import bgpy
import pytest
import trust_marker
from bgpy.core.message import Message, MessageType

TOKEN = "a-token-for-the-trust-tests"
TASKS = (trust_marker.init_task, trust_marker.exec_task, trust_marker.exit_task)
OK = "Initialization successful."


def second(**args):
    return {**args, "await_response": False}


def client(server, token=TOKEN):
    return bgpy.Client("127.0.0.1", server.port, token=token, log_level="CRITICAL")


class Global:
    """A pickled reference to the global module.name, whatever it is."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class GlobalPickler(pickle._Pickler):
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
            return
        super().save(obj, save_persistent_id)


def dumps(message):
    out = io.BytesIO()
    GlobalPickler(out, protocol=4).dump(message)
    return out.getvalue()


class Raw:
    """bgpy's wire format by hand."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, message_or_bytes):
        data = message_or_bytes
        if not isinstance(data, bytes):
            data = dumps(data)
        body = base64.encodebytes(data)
        self.sock.sendall(f"{len(body):<16}".encode() + body)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buffer += chunk

    def frame(self):
        while len(self.buffer) < 16:
            self._fill()
        size = int(self.buffer[:16])
        while len(self.buffer) < 16 + size:
            self._fill()
        body, self.buffer = self.buffer[16 : 16 + size], self.buffer[16 + size :]
        return pickle.loads(base64.decodebytes(body))

    def ack(self):
        self.send(Message(MessageType.OK, {"message": "Received"}))

    def authenticate(self, token):
        self.send(Message(MessageType.AUTH, {"token": token, "await_response": True}))
        assert self.frame().args["message"] == "Received 'AUTH'"
        answer = self.frame()
        self.ack()
        return answer.args["message"]

    def refused(self, payload):
        """Send `payload`; the refusal text, after which the server closes."""
        self.send(payload)
        first, answer = self.frame(), self.frame()
        # An INIT is acknowledged (then refused, unless already initialized);
        # a frame refused while decoding gets the error in both slots.
        if first.type is MessageType.OK:
            assert first.args["message"] == "Received 'INIT'"
        else:
            assert first.args["message"] == answer.args["message"]
        assert answer.type is MessageType.ERROR
        self.ack()
        assert self.closed()
        return answer.args["message"]

    def closed(self):
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()


def init(init_task, exec_task=trust_marker.exec_task, exit_task=trust_marker.exit_task):
    return Message(
        MessageType.INIT,
        {
            "init_task": init_task,
            "exec_task": exec_task,
            "exit_task": exit_task,
            "await_response": True,
        },
    )


@pytest.fixture(scope="module")
def token_server(module_bgpy_server):
    """One server with a token for the refusals: none of them changes its state."""
    return module_bgpy_server(token=TOKEN)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "imported"


def test_token_holder_may_name_any_importable_module(bgpy_server, marker):
    server = bgpy_server(token=TOKEN, BGPY_IMPORT_MARKER=str(marker))
    assert not marker.exists()
    assert client(server).initialize(*TASKS) == second(message=OK)
    # The server imported the module the token holder named.
    assert marker.read_text() == "imported\n"
    assert client(server).terminate() == {"message": "Received 'EXIT'"}
    assert server.wait() == 0


def test_no_import_for_a_wrong_token_or_before_auth(bgpy_server, marker):
    server = bgpy_server(token=TOKEN, BGPY_IMPORT_MARKER=str(marker))
    assert client(server, "wrong").initialize(*TASKS) == second(
        message="Invalid client authentication."
    )
    raw = Raw(server.port)
    assert raw.refused(init(trust_marker.init_task)) == (
        "Refused: 'trust_marker.init_task' is not allowed before AUTH: "
        "authenticate with the server's token first."
    )
    raw.close()
    assert not marker.exists()
    assert client(server).initialize(*TASKS) == second(message=OK)


def test_an_explicit_allow_list_wins_over_the_token(bgpy_server, marker):
    server = bgpy_server(
        "--allow-module",
        "bgpy.example.tasks",
        token=TOKEN,
        BGPY_IMPORT_MARKER=str(marker),
    )
    assert client(server).initialize(*TASKS) == second(
        message="Refused: 'trust_marker.init_task' is not allowed: start the "
        "server with --allow-module trust_marker (allowed now: bgpy.example.tasks)."
    )
    assert not marker.exists()
    from bgpy.example import tasks

    assert client(server).initialize(
        tasks.init_task, tasks.exec_task, tasks.exit_task
    ) == second(message=OK)


def test_without_token_only_allowed_modules(bgpy_server, marker):
    server = bgpy_server(BGPY_IMPORT_MARKER=str(marker))
    assert client(server, None).initialize(*TASKS) == second(
        message="Refused: 'trust_marker.init_task' is not allowed: start the "
        "server with --allow-module trust_marker, or set a token "
        "(--token / BGPY_TOKEN) and authenticate."
    )
    assert not marker.exists()


class Call:
    """Pickles as a call of trust_marker.touch(path) (REDUCE)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (trust_marker.touch, (self.path,))


NOT_PLAIN = (
    "only plain Python functions may be named (no builtins, C functions, classes)"
)


@pytest.mark.one_worker
@pytest.mark.parametrize(
    "task, message",
    [
        (eval, f"Refused: 'builtins.eval' is not allowed: {NOT_PLAIN}."),
        (socket.socket, f"Refused: 'socket.socket' is not allowed: {NOT_PLAIN}."),
        (
            trust_marker.NotATask,
            f"Refused: 'trust_marker.NotATask' is not allowed: {NOT_PLAIN}.",
        ),
        (math.sqrt, f"Refused: 'math.sqrt' is not allowed: {NOT_PLAIN}."),
        (
            Global("__main__", "main"),
            "Refused: '__main__.main' is not allowed: '__main__' is not a public "
            "module.",
        ),
        (
            pickle.loads,
            "Refused: '_pickle.loads' is not allowed: '_pickle' is not a public "
            "module.",
        ),
        (
            # a plain function, but imported into the module it is named from
            Global("trust_marker", "open_file"),
            "Refused: 'trust_marker.open_file' is not a function defined in "
            "'trust_marker'.",
        ),
    ],
    ids=["builtin", "class", "own-class", "c-function", "main", "private", "imported"],
)
def test_token_holder_gets_only_plain_functions(token_server, task, message):
    raw = Raw(token_server.port)
    assert raw.authenticate(TOKEN) == "Authentication successful."
    assert raw.refused(init(task)) == message
    raw.close()
    # Another client is unaffected (and nothing was initialized).
    assert client(token_server).execute({"command": "get"}) == {
        "message": "Not initialized."
    }


@pytest.mark.one_worker
def test_a_pickle_never_calls_a_function_even_for_a_token_holder(
    token_server, tmp_path
):
    server = token_server
    touched = tmp_path / "touched"
    raw = Raw(server.port)
    assert raw.authenticate(TOKEN) == "Authentication successful."
    raw.send(Message(MessageType.EXEC, {"x": Call(touched), "await_response": False}))
    answer = raw.frame()
    assert answer.type is MessageType.ERROR
    assert answer.args["message"].startswith("Invalid message: TypeError:")
    raw.close()
    assert not touched.exists()
    assert client(server).execute({"command": "get"}) == {"message": "Not initialized."}
