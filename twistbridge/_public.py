"""The names C{twistbridge} offers, gathered (imported on first use)."""

from twistbridge.app import Bridge
from twistbridge.bgpy._core import respond
from twistbridge.izzati._core import file_return

__all__ = ["Bridge", "file_return", "respond"]
