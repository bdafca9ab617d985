"""bgpy's own respond() and twistbridge's, on the client object a task gets."""

import bgpy
import bgpy.server
import pytest
from bgpy.core.message import Message as BgpyMessage
from bgpy.core.message import MessageType as BgpyType

import twistbridge.bgpy
from twistbridge.bgpy._core import Message, MessageType
from twistbridge.bgpy._runtime import TaskClient


class Connection:
    """What a TaskClient needs of a connection: encode, peer, reactor."""

    peer = "127.0.0.1:1"

    def __init__(self):
        self.reactor = self

    def callFromThread(self, f, *args):
        f(*args)

    def encode(self, message, second=False):
        return (message.type.name, message.args, second)


def sent(client):
    results = []
    client.response.addCallback(results.append)
    return results


@pytest.mark.parametrize(
    "respond", [bgpy.respond, bgpy.server.respond, twistbridge.bgpy.respond]
)
@pytest.mark.parametrize("error, kind", [(False, "OK"), (True, "ERROR")])
def test_each_respond_sends_the_second_response(respond, error, kind):
    client = TaskClient(Connection(), await_response=True)
    assert respond(client, {"value": 910}, error=error) is None
    assert sent(client) == [(kind, {"value": 910}, True)]


def test_send_takes_bgpy_messages_and_ours_and_nothing_else():
    client = TaskClient(Connection(), await_response=True)
    client.send(BgpyMessage(BgpyType.OK, {"a": 1, "await_response": False}))
    assert sent(client) == [("OK", {"a": 1}, True)]
    ours = TaskClient(Connection(), await_response=True)
    ours.send(Message(MessageType.ERROR, {"b": 2}))
    assert sent(ours) == [("ERROR", {"b": 2}, True)]
    with pytest.raises(TypeError, match="a bgpy Message of type OK or ERROR"):
        ours.send(BgpyMessage(BgpyType.EXEC, {}))
    with pytest.raises(TypeError):
        ours.send({"not": "a message"})


def test_nothing_is_sent_to_a_client_that_waits_for_nothing():
    client = TaskClient(Connection(), await_response=False)
    bgpy.respond(client, {"value": 1})
    assert sent(client) == []
