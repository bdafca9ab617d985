"""What registering the izzati callback records.  Pure Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from twistbridge.handlers import Handler

__all__ = ["IzzatiRegistration"]


@dataclass
class IzzatiRegistration:
    """
    The izzati callback of a bridge.

    @ivar handler: the resolved callback.
    @ivar args: extra positional arguments passed after C{text, data}.
    @ivar kwargs: extra keyword arguments.
    @ivar max_upload_size: request body limit in bytes, or L{None} for the
        bridge's setting.
    @ivar queue_first: pass C{args[0]} before C{text, data} (izzati's
        C{background=True}).
    """

    handler: Handler
    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_upload_size: Optional[int] = None
    queue_first: bool = False
