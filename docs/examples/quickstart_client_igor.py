"""Call two Igor actions over one WebSocket with websocket-client."""

import json
import sys

from websocket import create_connection


def call(ws, stream_id, action, data):
    """Send one action; collect the stream's messages until it closes."""
    ws.send(json.dumps({"streamId": stream_id, "action": action, "data": data}))
    received = []
    while True:
        message = json.loads(ws.recv())
        if message.get("streamId") != stream_id:
            continue  # another stream's message (e.g. a process broadcast)
        if message.get("close"):
            return received
        if "error" in message:
            raise RuntimeError(message["error"])
        received.append(message["data"])


def main(url="ws://127.0.0.1:5020/ws"):
    """Greet, then count down from 3; return both streams' data."""
    ws = create_connection(url, timeout=10)
    try:
        return call(ws, "s1", "greet", {"name": "Ada"}), call(
            ws, "s2", "countdown", {"from": 3}
        )
    finally:
        ws.close()


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
    # (['Hello Ada'], [3, 2, 1])
