"""
Keep an Igor session across reconnects when the server runs with
``--igor-takeover token`` (websocket-client).

    python igor_resume_client.py ws://127.0.0.1:5678
"""

import json
import sys

import websocket


def connect(url, saved=None):
    """
    Open an Igor WebSocket and, given the C{saved} token data of an earlier
    connection, take its session over.  Returns the socket and the token
    data to save for next time: C{{"client_id": ..., "resume_token": ...}}.
    """
    ws = websocket.create_connection(url, timeout=10)
    reply = json.loads(ws.recv())  # the server's first message: our token
    if saved is not None:
        ws.send(
            json.dumps({"streamId": "hello", "action": "introduce_self", "data": saved})
        )
        reply = json.loads(ws.recv())  # a new token, or why not
    if reply.get("action") != "resume_token":
        ws.close()
        raise RuntimeError(reply.get("error"))
    return ws, reply["data"]


if __name__ == "__main__":
    ws, saved = connect(sys.argv[1])
    print("connected as", saved["client_id"])
    ws.close()
    ws, saved = connect(sys.argv[1], saved)  # within 10 s: the same session
    print("resumed as", saved["client_id"])
    ws.close()
