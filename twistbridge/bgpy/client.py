"""bgpy's C{bgpy.client} name: C{Client}."""

from twistbridge.bgpy import Client

__all__ = ["Client"]
