"""An unmodified Igor program, its import changed to twistbridge.igor."""

import os

from igor_test_app import API, WORKER, pusher

from twistbridge.igor import IgorServer

server = IgorServer(api=API, config={"port": int(os.environ.get("IGOR_PORT", "5678"))})
server.session_delete_timeout = float(os.environ.get("IGOR_SESSION_TIMEOUT", "10"))
server.add_process("worker", WORKER)
server.add_process("pusher", pusher)
server.run_forever()
