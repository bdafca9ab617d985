"""
The JSON codec of the protocols (twistbridge._json), orjson against the
standard library, on the messages of the other benchmarks:

    .venv/bin/python bench/json_codec_bench.py [--rounds 15]

Each case runs with orjson and with the standard library alone in turn
(C{_json.FAST} switched), round after round, and the best round of each is
kept, so that a busy machine slows both alike.  Needs orjson (the C{fast}
extra) for its second column.
"""

from __future__ import annotations

import argparse
import json
import timeit

from twistbridge import _json
from twistbridge.bgpy._jsonlines import Message, MessageType, encode_json
from twistbridge.igor._core import data_frame, parse_message, stream_prefix
from twistbridge.jsonrpc._core import Call
from twistbridge.jsonrpc._encode import encode_result
from twistbridge.jsonrpc._parse import parse

ONE = json.dumps(
    {"jsonrpc": "2.0", "method": "echo", "params": ["hello"], "id": 1}
).encode()
BATCH = json.dumps(
    [{"jsonrpc": "2.0", "method": "echo", "params": [i], "id": i} for i in range(100)]
).encode()
ROWS = {
    "rows": [{"id": i, "name": f"n{i}", "ok": True, "v": i * 1.5} for i in range(50)]
}
IGOR = b'{"streamId":"s1","action":"echo","data":{"a":[1,2,3],"b":"hello"}}'
PREFIX = stream_prefix("s1")
CALL = Call("echo", [], 1, False)
LINE = Message(MessageType.EXEC, {"result": {"a": [1, 2, 3], "b": "hello"}})

CASES = {
    "jsonrpc parse, one echo call": lambda: parse(ONE),
    "jsonrpc parse, batch of 100": lambda: parse(BATCH),
    "jsonrpc encode, 50-row result": lambda: encode_result(CALL, ROWS),
    "igor parse, echo message": lambda: parse_message(IGOR),
    "igor data frame, small dict": lambda: data_frame(PREFIX, {"a": [1, 2], "b": "x"}),
    "bgpy encode, small answer": lambda: encode_json(LINE),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    fast_available = _json.FAST
    modes = (False, True) if fast_available else (False,)
    print(f"best of {args.rounds} interleaved rounds; microseconds per call")
    for name, case in CASES.items():
        best = {mode: float("inf") for mode in modes}
        for _ in range(args.rounds):
            for mode in modes:
                _json.FAST = mode
                n = 200 if "batch" in name or "50-row" in name else 2000
                best[mode] = min(best[mode], timeit.timeit(case, number=n) / n * 1e6)
        _json.FAST = fast_available
        line = f"  {name:32s} stdlib {best[False]:8.2f}"
        if fast_available:
            line += f"   orjson {best[True]:8.2f}   {best[False] / best[True]:5.2f}x"
        print(line)


if __name__ == "__main__":
    main()
