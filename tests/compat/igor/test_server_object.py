"""IgorServer's Igor attributes over a real socket: server.send_message(_to_all), processes, paths."""

import json
import subprocess
import sys
import textwrap

import websocket

from twistbridge.testing import free_port, wait_for

PROGRAM = textwrap.dedent(
    """
    import json, sys
    from twistbridge.igor import IgorServer, IgorProcess, ProcessOutput, Stream

    def hello(out, data, **kwargs):
        igor.server.send_message(kwargs["client_id"], json.dumps({{"direct": data}}))
        igor.server.send_message_to_all(json.dumps({{"all": data}}))
        out.send([isinstance(out, Stream), sorted(igor.paths), sorted(igor.processes),
                  isinstance(igor.processes["p"]["output"], ProcessOutput),
                  list(igor.streams)])

    class P(IgorProcess):
        def run(self):
            pass

    igor = IgorServer(api={{"greet": {{"hello": hello}}}}, config={{"port": {port}}})
    igor.add_process("p", P())
    igor.run_forever()
    """
)


def test_server_object_and_attributes():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM.format(port=port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def connect():
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode())
            try:
                return websocket.create_connection(
                    f"ws://127.0.0.1:{port}/", timeout=10
                )
            except OSError:
                return None

        ws = wait_for(connect, 30, what="IgorServer")
        ws.send(json.dumps({"streamId": "s1", "action": "greet.hello", "data": "x"}))
        got = [json.loads(ws.recv()) for _ in range(4)]
        ws.close()
    finally:
        process.terminate()
        process.wait(10)
    assert got == [
        {"direct": "x"},
        {"all": "x"},
        {"streamId": "s1", "data": [True, ["greet.hello"], ["p"], True, ["s1"]]},
        {"streamId": "s1", "close": True},
    ]
