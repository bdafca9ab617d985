"""
How Igor's own integration test starts its server here: server_instance.py
with this Python (Igor's test ran ``START ...\\env\\Scripts\\python.exe
server_instance.py``, a Windows command), waiting until its two fixed ports
(5678, 8080) listen.  The process is killed, and its log removed, when the test run ends.
"""

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PORTS = (5678, 8080)


def _listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)  # sleep-ok: poll interval of a bounded wait


def start_server_instance():
    """Start server_instance.py; return its Popen once both ports listen."""
    _wait(
        lambda: not any(_listening(p) for p in PORTS),
        30,
        f"ports {PORTS} to be free (Igor's test uses them)",
    )
    log = tempfile.NamedTemporaryFile(
        prefix="igor-instance-", suffix=".log", delete=False
    )
    process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "server_instance.py")],
        cwd=HERE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # (run last first: the server is killed, then its log removed)
    atexit.register(os.unlink, log.name)
    atexit.register(log.close)
    atexit.register(process.kill)

    def ready():
        if process.poll() is not None:
            log.flush()
            with open(log.name) as f:
                raise RuntimeError(f"server_instance.py exited: {f.read()}")
        return all(_listening(p) for p in PORTS)

    _wait(ready, 30, "server_instance.py listening")
    return process
