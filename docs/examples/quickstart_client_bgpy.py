"""Drive the bgpy tasks with bgpy's own client (pip install bgpy)."""

import sys

from bgpy import Client


def main(host="127.0.0.1", port=54321):
    """Increase, decrease, then read the state; return it.

    It leaves the state running (no ``terminate()``), so other clients, and
    this one run again, carry on from where it stopped.
    """
    client = Client(host, int(port))
    client.execute({"command": "increase", "value_change": 10})
    client.execute({"command": "decrease", "value_change": 100})
    return client.execute({"command": "get"}, await_response=True)


if __name__ == "__main__":
    # bgpy's messages carry its "await_response" flag along with the answer:
    # {'request_count': 3, 'value': 910, 'await_response': False}
    print(main(*sys.argv[1:]))
