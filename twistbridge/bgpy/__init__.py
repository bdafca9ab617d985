"""
Drop-in replacement for bgpy: C{from twistbridge.bgpy import Server, Client,
respond, token_create}; C{python -m twistbridge.bgpy server HOST PORT}.
"""

from twistbridge.bgpy._core import respond

__all__ = ["respond"]
