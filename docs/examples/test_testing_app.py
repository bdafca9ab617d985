"""The tests of the "Testing your app" page (run with pytest)."""

import unittest

import pytest
import testing_app

from twistbridge.testing import BridgeTestClient


@pytest.fixture
def bridge():
    """The app that twistbridge's ``bridge_client`` fixture serves."""
    return testing_app.bridge


def test_upload(bridge_client):
    response = bridge_client.upload(
        text={"title": "holiday"},
        files={"file": ("beach.jpg", b"\xff\xd8" + b"0" * 998)},
    )
    assert response.status == 200
    assert response.json() == {"title": "holiday", "sizes": [1000]}


def test_rpc(bridge_client):
    assert bridge_client.rpc("add", 2, 3) == 5
    assert bridge_client.batch([("add", [1, 1]), ("add", [2, 2])]) == [
        {"jsonrpc": "2.0", "result": 2, "id": 1},
        {"jsonrpc": "2.0", "result": 4, "id": 2},
    ]


def test_igor_stream_and_clock(bridge_client):
    ws = bridge_client.igor()
    assert ws.call("echo", "hi") == [
        {"streamId": "1", "data": "hi"},
        {"streamId": "1", "close": True},
    ]
    bridge_client.advance(3)  # three seconds, at once
    assert [m["data"] for m in ws.messages()] == [1, 2, 3]


@pytest.mark.parametrize("wire", ["json", "bgpy"])
def test_bgpy(bridge_client, wire):
    answers = bridge_client.bgpy(wire).call("EXEC", add=5, await_response=True)
    assert answers[-1]["args"]["value"] == 5


@pytest.mark.bridge("testing_app:bridge")
def test_named_by_a_marker(bridge_client):
    assert bridge_client.http("GET", "/health").json()["status"] == "ok"


class AddTest(unittest.TestCase):
    """Without pytest: plain unittest (or trial)."""

    def setUp(self):
        self.client = BridgeTestClient(testing_app.bridge)
        self.addCleanup(self.client.close)

    def test_add(self):
        self.assertEqual(self.client.rpc("add", 20, 22), 42)
