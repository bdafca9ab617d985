"""bgpy's C{bgpy.server} names: C{Server} and C{respond}."""

from twistbridge.bgpy import Server, respond

__all__ = ["Server", "respond"]
