"""
Drop-in replacement for C{izzati}: C{from twistbridge.izzati import Backend,
file_return, background}.
"""

from twistbridge.izzati._core import file_return

__all__ = ["file_return"]
