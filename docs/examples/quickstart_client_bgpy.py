"""Drive the bgpy tasks with bgpy's own client (pip install bgpy)."""

import sys

from bgpy import Client


def main(host="127.0.0.1", port=54321):
    """Increase, decrease, read the state, then exit; return the answers."""
    client = Client(host, int(port))
    client.execute({"command": "increase", "value_change": 10})
    client.execute({"command": "decrease", "value_change": 100})
    state = client.execute({"command": "get"}, await_response=True)
    final = client.terminate(await_response=True)
    return state, final


if __name__ == "__main__":
    state, final = main(*sys.argv[1:])
    # bgpy's messages carry its "await_response" flag along with the answer:
    # {'request_count': 3, 'value': 910, 'await_response': False}
    # {'request_count': 4, 'value': 910, 'status': 'Exited.', 'await_response': False}
    print(state)
    print(final)
