"""The pure core and the restricted unpickler, without sockets."""

import base64
import os
import pickle

import bgpy.core.message as real_message
import bgpy_tasks
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twistbridge.bgpy._core import (
    BgpyError,
    FrameDecoder,
    Message,
    MessageType,
    ack,
    detect_format,
    encode_bgpy,
    pickle_message,
)
from twistbridge.bgpy._jsonlines import LineDecoder, encode_json, parse_json_line
from twistbridge.bgpy._pickle import TaskRef, decode_frame, loads_message
from twistbridge.bgpy._tasks import (
    Authenticate,
    RefusedTask,
    Reject,
    RunTask,
    TaskMachine,
    TaskSet,
    call_init,
    decide,
    token_matches,
)

ALLOWED = frozenset({"bgpy_tasks"})
NOT_PLAIN = (
    "only plain Python functions may be named (no builtins, C functions, classes)"
)


def real(type_name, args):
    return pickle.dumps(real_message.Message(real_message.MessageType[type_name], args))


# framing ---------------------------------------------------------------------


def test_frames_split_and_joined():
    one, two = encode_bgpy(ack(MessageType.AUTH)), encode_bgpy(ack(MessageType.EXEC))
    decoder = FrameDecoder(1000)
    stream = one + two
    bodies = []
    for i in range(len(stream)):  # one byte at a time
        bodies += decoder.feed(stream[i : i + 1])
    assert [decode_frame(b) for b in bodies] == [
        ack(MessageType.AUTH),
        ack(MessageType.EXEC),
    ]
    assert not decoder.pending
    assert FrameDecoder(1000).feed(one + two) == bodies  # both in one read


@pytest.mark.parametrize(
    "header, message",
    [
        (b"abc             ", "Invalid header b'abc             ': not a length."),
        (b"-5              ", "Invalid header b'-5              ': not a length."),
        (b"1_000           ", "Invalid header b'1_000           ': not a length."),
        (b"0               ", "Invalid header: empty message."),
        (b"1001            ", "Message of 1001 bytes exceeds the limit of 1000 bytes."),
        (
            b"9999999999999999",
            "Message of 9999999999999999 bytes exceeds the limit of 1000 bytes.",
        ),
    ],
)
def test_bad_headers(header, message):
    decoder = FrameDecoder(1000)
    assert decoder.feed(header + b"more") == [BgpyError(message, True)]
    assert decoder.feed(b"anything") == []  # failed for good


def test_lines():
    decoder = LineDecoder(10)
    assert decoder.feed(b'{"a"') == []
    assert decoder.feed(b":1}\r\n\n  \n{}\n") == [b'{"a":1}', b"{}"]
    assert decoder.feed(b"x" * 11) == [
        BgpyError("Line exceeds the limit of 10 bytes.", True)
    ]


def test_detect_format():
    assert detect_format(b"123") == "bgpy"
    assert detect_format(b"{") == "json"
    assert detect_format(b"\x00") == "json"


# answers as bgpy's client reads them -------------------------------------------


def test_answers_unpickle_into_bgpys_own_classes():
    message = Message(
        MessageType.OK, {"state": {"v": [1, 2.5, None]}, "b": b"\x00", "s": {1}}
    )
    loaded = pickle.loads(pickle_message(message))
    assert type(loaded) is real_message.Message
    assert loaded.type is real_message.MessageType.OK
    assert loaded.args == message.args
    frame = encode_bgpy(message)
    assert frame[:16] == f"{len(frame) - 16:<16}".encode()
    assert pickle.loads(base64.decodebytes(frame[16:])).args == message.args
    # and back through the restricted unpickler
    assert loads_message(pickle_message(message)) == message


def test_answer_that_does_not_pickle():
    with pytest.raises(pickle.PicklingError):
        pickle_message(Message(MessageType.OK, {"f": lambda: 1}))


# the restricted unpickler -------------------------------------------------------


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_os_system_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    data = real("EXEC", {"x": Evil(marker)})
    assert loads_message(data, ALLOWED, True) == BgpyError(
        f"Refused: 'posix.system' is not allowed: {NOT_PLAIN}.", True
    )
    assert not marker.exists()


def test_real_client_init_resolves_allowed_tasks_after_auth_only():
    args = {
        "init_task": bgpy_tasks.init_task,
        "exec_task": bgpy_tasks.exec_task,
        "exit_task": bgpy_tasks.exit_task,
        "await_response": True,
    }
    message = loads_message(real("INIT", args), ALLOWED, True)
    assert message == Message(MessageType.INIT, args)
    assert loads_message(real("INIT", args), ALLOWED, False) == BgpyError(
        "Refused: 'bgpy_tasks.init_task' may only be sent after AUTH.", True
    )
    # Not allowed: the INIT comes back with inert refusals in its task
    # slots (answered only when the tasks are not initialized yet).
    refused = loads_message(real("INIT", args), frozenset(), True)
    assert refused.type is MessageType.INIT
    assert isinstance(refused.args["init_task"], RefusedTask)
    assert refused.args["init_task"].message == (
        "Refused: 'bgpy_tasks.init_task' is not allowed: start the server with "
        "--bgpy-allow-module bgpy_tasks, or set a token "
        "(--bgpy-token-file / BGPY_TOKEN) and authenticate."
    )
    assert not callable(refused.args["exit_task"])


@pytest.mark.parametrize(
    "payload, message",
    [
        # a builtin imported into an allowed module
        (
            b"\x80\x04\x8c\x0abgpy_tasks\x8c\x06system\x93.",
            f"Refused: 'bgpy_tasks.system' is not allowed: {NOT_PLAIN}.",
        ),
        # a plain function imported into an allowed module
        (
            b"\x80\x04\x8c\x0abgpy_tasks\x8c\x07respond\x93.",
            "Refused: 'bgpy_tasks.respond' is not a function defined in 'bgpy_tasks'.",
        ),
        (
            b"\x80\x04\x8c\x0abgpy_tasks\x8c\x08__file__\x93.",
            "Refused: 'bgpy_tasks.__file__' is not a public function name.",
        ),
        (
            b"cbuiltins\neval\n.",
            f"Refused: 'builtins.eval' is not allowed: {NOT_PLAIN}.",
        ),
        (
            b"\x80\x02P0\n.",
            "Invalid message: persistent ids (PERSID) are not allowed (byte 2).",
        ),
    ],
)
def test_refused_globals(payload, message):
    assert loads_message(payload, ALLOWED, True) == BgpyError(message, True)


def test_a_pickle_cannot_call_an_allowed_function():
    # STACK_GLOBAL bgpy_tasks.init_task, EMPTY_TUPLE, REDUCE
    payload = b"\x80\x04\x8c\x0abgpy_tasks\x8c\x09init_task\x93)R."
    error = loads_message(payload, ALLOWED, True)
    assert error.close
    assert error.message.startswith("Invalid message: TypeError:")
    # an inert reference is all a pickle gets outside the INIT task slots
    inert = loads_message(real("EXEC", {"f": bgpy_tasks.exec_task}), ALLOWED, True)
    assert isinstance(inert.args["f"], TaskRef)


def test_a_pickle_cannot_modify_message_type():
    # MessageType(4), then BUILD with a dict state on the member.
    payload = (
        b"\x80\x04\x8c\x11bgpy.core.message\x8c\x0bMessageType\x93K\x04\x85R"
        b"}\x8c\x06_name_\x8c\x04EVIL\x73b."
    )
    error = loads_message(payload)
    assert error.close and "cannot be modified" in error.message
    assert MessageType.OK.name == "OK"


@pytest.mark.parametrize(
    "payload",
    [b"", b"garbage", b"\x80\x04K\x01.", pickle.dumps([1, 2]), b"\x80\x04(" * 1000],
)
def test_not_a_message(payload):
    error = loads_message(payload)
    assert isinstance(error, BgpyError) and error.close


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_unpickler_only_returns_values(data):
    result = loads_message(data, ALLOWED, True)
    assert isinstance(result, (Message, BgpyError))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=20))
def test_fuzz_frame_decoder(chunks):
    decoder = FrameDecoder(64)
    for chunk in chunks:
        for item in decoder.feed(chunk):
            assert isinstance(item, (bytes, BgpyError))
            if isinstance(item, bytes):
                assert 0 < len(item) <= 64


# JSON lines ---------------------------------------------------------------------


def test_json_lines():
    assert parse_json_line(b'{"type": "exec", "args": {"a": 1}}') == Message(
        MessageType.EXEC, {"a": 1}
    )
    assert parse_json_line(b'{"type": "AUTH"}') == Message(MessageType.AUTH, {})
    assert parse_json_line(b"\xff") == BgpyError(
        "Invalid JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte."
    )
    assert encode_json(Message(MessageType.OK, {"s": {1}, "t": (1, 2)})) == (
        b'{"type":"OK","args":{"s":[1],"t":[1,2]}}\n'
    )
    assert encode_json(Message(MessageType.OK, {"o": object()})) == (
        b'{"type": "ERROR", "args": {"message": "Answer is not JSON: '
        b"answer['o'] of type object is not JSON.\"}}\n"
    )


# decisions and the task machine ---------------------------------------------------


def test_decide():
    auth = Message(MessageType.AUTH, {"token": "t"})
    assert decide(auth, False, "t") == Authenticate(True)
    assert decide(auth, False, "x") == Authenticate(False)
    assert decide(
        Message(MessageType.AUTH, {"token": None}), False, None
    ) == Authenticate(True)
    assert decide(Message(MessageType.AUTH, {"token": 5}), False, "5") == Authenticate(
        False
    )
    assert decide(Message(MessageType.EXEC, {}), False, "t") == Reject(
        BgpyError("Not authenticated: send AUTH first.")
    )
    assert decide(Message(MessageType.OK, {}), True, None) == Reject(
        BgpyError("Unexpected message type 'OK'.")
    )
    assert decide(Message(MessageType.INIT, {}), True, None) == RunTask("init", {})
    tasks = TaskSet(bgpy_tasks.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task)
    args = {
        "init_task": tasks.init_task,
        "exec_task": tasks.exec_task,
        "exit_task": tasks.exit_task,
    }
    assert decide(Message(MessageType.INIT, args), True, None) == RunTask(
        "init", args, tasks
    )
    assert decide(Message(MessageType.INIT, {"init_task": 1}), True, None) == Reject(
        BgpyError("INIT needs init_task, exec_task and exit_task.")
    )
    assert token_matches(None, "anything")


def test_task_machine():
    tasks = TaskSet(bgpy_tasks.init_task, bgpy_tasks.exec_task, bgpy_tasks.exit_task)
    machine = TaskMachine()
    assert machine.plan_init(None) == BgpyError("No tasks configured on the server.")
    assert machine.plan_task() == BgpyError("Not initialized.")
    assert machine.plan_init(tasks) is tasks
    machine.commit_init(tasks, {"v": 1})
    assert machine.plan_init(tasks) == BgpyError("Already initialized.")
    assert machine.plan_task() is tasks
    machine.commit_exec({"v": 2})
    assert machine.state == {"v": 2}
    machine.reset()
    assert (machine.initialized, machine.state, machine.current) == (False, None, None)


def test_call_init_both_signatures():
    assert call_init(lambda: {"a": 1}, "client") == {"a": 1}
    assert call_init(lambda client: {"c": client}, "client") == {"c": "client"}
