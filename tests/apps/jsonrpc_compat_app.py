"""
The flaskJSONRPCServer compatibility class serving the same methods as
jsonrpc_features_app (tests/jsonrpc).  Run as a script:

    python jsonrpc_compat_app.py serve       # serveForever() until SIGTERM
    python jsonrpc_compat_app.py blocking    # blocking=True
    python jsonrpc_compat_app.py lifecycle   # start/stop/restart, prints JSON
"""

import json
import sys
import urllib.error
import urllib.request

import jsonrpc_features_app as app

from twistbridge.jsonrpc import flaskJSONRPCServer


class Numbers:
    def double(self, x):
        return x * 2

    def _hidden(self):
        return "no"


REACTOR = [
    "subtract",
    "update",
    "notify_hello",
    "notify_sum",
    "get_data",
    "where_reactor",
    "deferred_triple",
    "server_pid",
    "not_json",
    "kwonly",
    "echo",
    "whoami",
    "big",
    "big_plain",
    "guarded",
    "hang",
    "compute",
    "parked",
]
THREAD = ["where", "raises", "raises_type_error", "set_outputs", "call_async"]


def build(mode):
    server = flaskJSONRPCServer(
        ("127.0.0.1", 0),
        blocking=(mode == "blocking"),
        cors=True,
        allowCompress=True,
        compressMinSize=1000,
    )
    for name in REACTOR:
        server.registerFunction(getattr(app, name), path="/rpc", run_in="reactor")
    for name in THREAD:
        server.registerFunction(getattr(app, name), path="/rpc")
    server.registerFunction(app.sum_, path="/rpc", name="sum", run_in="reactor")
    server.registerFunction(app.async_double, path="/rpc")
    server.registerFunction(
        app.pid_plus, path="/rpc", dispatcherBackend="parallelWithSocket"
    )
    server.registerFunction(app.helloworld_target, path="/rpc", name="greet")
    for name in [
        "lock",
        "unlock",
        "stats",
        "serial_state",
        "open_gate",
        "cancelled_count",
        "release_parked",
        "reload_from",
    ]:
        server.registerFunction(getattr(app, name), path="/control", run_in="reactor")
    server.registerFunction(app.gated, path="/serial")
    server.registerFunction(app.slow_probe, path="/serial")
    for name in ["add", "text"]:
        server.registerFunction(getattr(app, name), path="/api", run_in="reactor")
    server.registerFunction(app.version, path="/api/v2", run_in="reactor")
    server.registerFunction(app.secret, path="/secure", run_in="reactor")
    server.registerFunction(app.public, path="/secure", run_in="reactor")
    # per-call auth (the Bridge API's), as on `twistd bridge`; the
    # constructor's auth= is flaskJSONRPCServer's per-request one.
    server.bridge.rpc_path("/secure", auth=app.check_token)
    server.registerFunction(app.tiny, path="/tiny", run_in="reactor")
    server.bridge.rpc_path("/tiny", max_batch_size=5)
    server.registerInstance(Numbers(), path="/inst")
    server.registerFunction(app.echo, run_in="reactor")  # path "/", the seed's default
    for f in (app.lock, app.unlock, app.stats):
        server.unlock(f, exclusive=True)
    return server


def post(url, payload):
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError) as e:
        return f"refused: {type(e).__name__}"


def lifecycle():
    server = build("lifecycle")
    out = {}
    call = {"jsonrpc": "2.0", "method": "echo", "params": ["hi"], "id": 1}
    server.start()
    port = server.ports[0].getHost().port
    url = f"http://127.0.0.1:{port}/rpc"
    out["started"] = post(url, call)
    server.stop()
    out["stopped"] = post(url, call)
    server.start()
    port2 = server.ports[0].getHost().port
    out["restarted_after_start"] = post(f"http://127.0.0.1:{port2}/rpc", call)
    server.restart()
    port3 = server.ports[0].getHost().port
    out["restarted"] = post(f"http://127.0.0.1:{port3}/rpc", call)
    server.lock()
    out["locked"] = server.wait(returnStatus=True)
    server.unlock()
    out["unlocked"] = server.wait(returnStatus=True)
    out["callAsync"] = server.callAsync(lambda a, b: a + b, [2, 3])
    checker = server.callAsync(lambda: "later", returnChecker=True)
    while True:
        done, result, error = checker()
        if done:
            break
    out["checker"] = [done, result, error]
    out["stats_echo_count"] = server.stats()["methods"]["/rpc echo"]["count"]
    server.stop()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if mode == "lifecycle":
        lifecycle()
    else:
        build(mode).serveForever()
