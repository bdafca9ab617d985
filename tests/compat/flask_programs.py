"""A flaskJSONRPCServer program of a test, started as its users start one."""

import subprocess
import sys
import threading

import requests

from twistbridge.testing import free_port, wait_for


def start_program(path, source):
    """
    Write C{source(port)} (the program, listening on 127.0.0.1:C{port}, a
    free port) to C{path}, run it with this Python and wait until it answers
    HTTP: return the process and its C{http://127.0.0.1:port} address.  The
    caller stops it (L{stop_program}).
    """
    port = free_port()
    path.write_text(source(port))
    process = subprocess.Popen(
        [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()

    def up():
        if process.poll() is not None:
            raise RuntimeError(b"".join(output).decode())
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    try:
        wait_for(up, 30, what="the program listening")
    except BaseException:
        stop_program(process)
        raise
    return process, f"http://127.0.0.1:{port}"


def stop_program(process):
    """SIGTERM the program and wait for it (15 s at most)."""
    process.terminate()
    process.wait(15)
