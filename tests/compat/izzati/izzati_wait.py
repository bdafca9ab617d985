"""Waiting for izzati's port (5020), bounded, instead of sleeping."""

import socket
import time

PORT = 5020


def _listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until_served(_seconds=None, port=PORT, timeout=30):
    """Return once C{port} accepts connections (at most C{timeout} s)."""
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {port} after {timeout}s")
        time.sleep(0.02)  # sleep-ok: poll interval of a bounded wait
