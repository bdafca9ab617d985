"""bgpy's message classes (C{bgpy.core.message})."""

from twistbridge.bgpy._core import Message, MessageType

__all__ = ["Message", "MessageType"]
