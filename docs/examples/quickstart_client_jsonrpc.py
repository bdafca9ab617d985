"""Call the JSON-RPC methods with requests and jsonrpcclient."""

import sys

import requests
from jsonrpcclient import Error, Ok, parse, request


def main(url="http://127.0.0.1:5020/rpc"):
    """Call add(2, 3) and divide(1, 0); return both parsed answers."""
    answers = []
    for method, params in (("add", [2, 3]), ("divide", {"a": 1, "b": 0})):
        response = requests.post(url, json=request(method, params=params), timeout=10)
        answers.append(parse(response.json()))
    return answers


if __name__ == "__main__":
    # result: 5
    # error: -32000 division by zero
    for answer in main(*sys.argv[1:]):
        if isinstance(answer, Ok):
            print("result:", answer.result)
        elif isinstance(answer, Error):
            print("error:", answer.code, answer.message)
