"""
The app of bench/broker_bench.py: a process whose output the handlers use
to broadcast bursts and to send to one client.
"""

import time

from twistbridge import Bridge
from twistbridge.igor import _protocol

OUTPUTS = {}
PREPARED = _protocol.IgorProtocol.write_prepared
WRITE = _protocol.IgorProtocol.write


def send_message(self, payload):
    """autobahn's own per-client send: what a loop over clients would call."""
    if self.state == _protocol._OPEN:
        self.sendMessage(payload, False)
        self._sent(len(payload))


def fan(output):
    """The process: keeps its output for the handlers."""
    OUTPUTS["fan"] = output


def burst(out, data, **kwargs):
    """Broadcast C{data["n"]} messages of C{data["size"]} bytes, from the reactor."""
    filler = "x" * data["size"]
    for i in range(data["n"]):
        OUTPUTS["fan"].send("b", [i, filler])
    out.send("done")


def framing(out, data, **kwargs):
    """
    C{data}: how a broadcast is written to each client: C{"prepared"} (framed
    once, what the hub does), C{"frame"} (framed once per client by the
    hub's own writer) or C{"sendMessage"} (autobahn's C{sendMessage} per
    client, the reference).
    """
    protocol = _protocol.IgorProtocol
    protocol.write_prepared = PREPARED if data == "prepared" else None
    protocol.write = send_message if data == "sendMessage" else WRITE
    out.send(data)


def whoami(out, data, client_id, **kwargs):
    out.send(client_id)


def ping(out, data, **kwargs):
    """Send the time back to client C{data} through the process output."""
    OUTPUTS["fan"].send("pong", time.time(), client_id=data)
    out.send("sent")


def holds(out, data, **kwargs):
    out.send("fan" in OUTPUTS)


bridge = Bridge(max_connections=0, max_connections_per_client=0)
bridge.igor_actions(
    {
        "burst": burst,
        "framing": framing,
        "whoami": whoami,
        "ping": ping,
        "holds": holds,
    },
    run_in="reactor",
)
bridge.igor_process("fan", fan)
