"""L{twistbridge.testing.BridgeProcess}: what it leaves behind when it stops."""

import os
import signal

from twistbridge.testing import BridgeProcess


def test_a_killed_process_leaves_no_pid_file():
    """twistd removes its pid file on a clean exit; a killed one cannot, and
    stop() does it instead, returning the signal's status."""
    server = BridgeProcess(
        ["--igor-port", "none", "--bgpy-port", "none"], closed=("igor", "bgpy")
    )
    with server:
        assert os.path.isfile(server.pidfile)
        with open(server.pidfile) as f:
            assert int(f.read()) == server.process.pid
        server.process.send_signal(signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
        assert not os.path.exists(server.pidfile)
