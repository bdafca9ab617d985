"""
Runs the original Igor server (github.com/cezary986/igor, a checkout given
as argv[1]) with a JSON echo action, for bench/igor_bench.py.

Igor calls C{WebsocketServer(port, host=..., loglevel=...)}; the current
websocket-server package takes C{(host, port, loglevel)}, so the name is
adapted before Igor's server module uses it.  Needs `websocket-server`.
"""

import logging
import sys

sys.path.insert(0, sys.argv[1])
port = int(sys.argv[2])

import igor.server as igor_server  # noqa: E402
import websocket_server  # noqa: E402


def adapted(port, host="127.0.0.1", loglevel=logging.WARNING):
    return websocket_server.WebsocketServer(host=host, port=port, loglevel=loglevel)


igor_server.WebsocketServer = adapted


def echo(out, data, **kwargs):
    out.send(data)


config = dict(igor_server.CONFIG)
config.update(
    port=port, host="127.0.0.1", logging={"level": logging.CRITICAL, "file_name": None}
)
server = igor_server.IgorServer(api={"echo": echo}, config=config)
print(f"listening on {port}", flush=True)
server.run_forever()
