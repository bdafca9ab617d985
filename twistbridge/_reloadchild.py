"""
The server process of C{twistd -n bridge --reload} (L{twistbridge.reload})
and each worker of C{twistd bridge --workers N} (L{twistbridge.workers}):
C{twistd} itself, run in a child of the supervisor.

It claims the sockets the supervisor passed (systemd's protocol wants
C{LISTEN_PID} to be the receiving process, which only the child knows),
leaves the terminal's process group so that Ctrl-C reaches the supervisor
alone (which then stops this process once, gracefully), and dies with the
supervisor if that is killed.
"""

import os
import sys


def main() -> None:
    """Run C{twistd} with this process's arguments."""
    from twistbridge._poolworker import _die_with_parent

    os.environ["LISTEN_PID"] = str(os.getpid())
    os.setpgrp()
    _die_with_parent()
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
