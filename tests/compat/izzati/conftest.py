"""
izzati's own test (test_izzati.py, its izzati/test.py) against
twistbridge.izzati.  Only its imports changed: Backend comes from
twistbridge.izzati, Frontend from the real izzati, and its one-second pause
before the first request is ``wait_until_served``, which waits (bounded)
until port 5020 answers instead of sleeping.
"""

import multiprocessing
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # for izzati_wait

from izzati_wait import PORT, _listening  # noqa: E402


@pytest.fixture(autouse=True)
def port_5020_free_and_children_stopped():
    """izzati's test binds 5020: wait until it is free; stop its server after."""
    deadline = time.monotonic() + 30
    while _listening(PORT):
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {PORT} (izzati's) stays busy")
        time.sleep(0.05)  # sleep-ok: poll interval of a bounded wait
    yield
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(10)
