"""
Drop-in replacement for Igor: C{from twistbridge.igor import IgorServer,
flatten, IgorProcess}.
"""

from twistbridge.igor._core import flatten

__all__ = ["flatten"]
