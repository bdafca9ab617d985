"""Drive the bgpy tasks over JSON lines, from any language (here: a socket)."""

import json
import socket
import sys


class JsonLinesClient:
    """One connection; each message is one JSON object on one line."""

    def __init__(self, host, port, token=None):
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.lines = self.sock.makefile("rb")
        ack, outcome = self.send("AUTH", {"token": token}, answers=2)
        if outcome["type"] != "OK":
            raise RuntimeError(outcome["args"]["message"])

    def send(self, type_, args, answers=1):
        """Send a message; return the acknowledgement and any further answers."""
        line = json.dumps({"type": type_, "args": args}) + "\n"
        self.sock.sendall(line.encode("utf-8"))
        return [json.loads(self.lines.readline()) for _ in range(answers)]

    def close(self):
        """Close the connection."""
        self.lines.close()
        self.sock.close()


def main(host="127.0.0.1", port=54321):
    """Initialize (if need be), increase, read the state, exit; return the answers."""
    client = JsonLinesClient(host, port)
    try:
        # INIT runs init_task unless the state is running already, which the
        # server answers with the error "Already initialized.": fine here.
        client.send("INIT", {}, answers=2)
        client.send("EXEC", {"command": "increase", "value_change": 10})
        # "await_response": true asks for the task's respond() as a 2nd line
        get = {"command": "get", "await_response": True}
        ack, state = client.send("EXEC", get, answers=2)
        ack, final = client.send("EXIT", {"await_response": True}, answers=2)
        return ack, state, final
    finally:
        client.close()


if __name__ == "__main__":
    for answer in main(*sys.argv[1:]):
        print(answer)
    # Right after the server started (or after another client's EXIT):
    # {'type': 'OK', 'args': {'message': "Received 'EXIT'"}}
    # {'type': 'OK', 'args': {'request_count': 2, 'value': 1010}}
    # {'type': 'OK', 'args': {'request_count': 3, 'value': 1010, 'status': 'Exited.'}}
