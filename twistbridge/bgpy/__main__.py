"""
The command line of the bgpy compatibility server (bgpy's C{bgpy server} /
C{bgpy terminate})::

    python -m twistbridge.bgpy server HOST PORT [--init-file F]
        [--allow-module M]... [--token] [--log-level L] [--log-file F]
    python -m twistbridge.bgpy terminate HOST PORT [--token]
        [--log-level L] [--log-file F]
    python -m twistbridge.bgpy version

C{--token} prompts for the token (hidden); otherwise C{BGPY_TOKEN} is used.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import List, Optional

from twistbridge.bgpy import ENV_TOKEN, Client, Server


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = argparse.ArgumentParser(prog="python -m twistbridge.bgpy")
    sub = p.add_subparsers(dest="command", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("host", help="host address")
        s.add_argument("port", type=int, help="port")
        s.add_argument("-t", "--token", action="store_true", help="prompt for a token")
        s.add_argument(
            "-l", "--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR"
        )
        s.add_argument("-f", "--log-file", default=None, help="path to a log file")

    server = sub.add_parser("server", help="run a bgpy server")
    common(server)
    server.add_argument("-i", "--init-file", default=None, help="file with the tasks")
    server.add_argument(
        "--allow-module",
        action="append",
        default=[],
        help="module whose task functions clients may send (repeatable)",
    )
    terminate = sub.add_parser("terminate", help="terminate a bgpy server")
    common(terminate)
    sub.add_parser("version", help="print the version")
    return p


def version() -> str:
    """C{twistbridge.bgpy VERSION}, as bgpy's C{bgpy version} prints it."""
    try:
        from importlib.metadata import version as get_version

        number = get_version("twistbridge")
    except Exception:
        from twistbridge._version import __version__ as number
    return f"twistbridge.bgpy {number}"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    if args.command == "version":
        print(version())
        return 0
    token = getpass.getpass("Token: ") if args.token else os.environ.get(ENV_TOKEN)
    if args.command == "server":
        Server(
            args.host,
            args.port,
            token=token,
            log_level=args.log_level,
            log_file=args.log_file,
            init_file=args.init_file,
            allow_modules=args.allow_module,
        ).run()
        return 0
    try:
        answer = Client(args.host, args.port, token=token).terminate()
    except OSError as e:
        print(f"bgpy: {e}", file=sys.stderr)
        return 1
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
