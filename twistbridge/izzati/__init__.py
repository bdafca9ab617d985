"""
Drop-in replacement for C{izzati}'s backend::

    from twistbridge.izzati import Backend, file_return, background

C{Backend(callback, args=(), kwargs={}, background=False)} and its
C{run(host="0.0.0.0", port=5020)} behave as izzati's, served by twistbridge
(streaming uploads, limits, the callback in a thread pool) instead of Flask's
development server (see L{twistbridge.izzati._compat}).  The names are
imported on first use.
"""

from types import ModuleType
from typing import TYPE_CHECKING

from twistbridge._lazy import lazy_attributes

if TYPE_CHECKING:  # the names, for type checkers and the API reference
    from twistbridge.izzati._compat import (
        Backend,
        UploadedFile,
        background,
        file_return,
        safe_filename,
    )

__all__ = ["Backend", "file_return", "background", "UploadedFile", "safe_filename"]


def _load() -> ModuleType:
    from twistbridge.izzati import _compat

    return _compat


__getattr__ = lazy_attributes(__name__, __all__, _load)
