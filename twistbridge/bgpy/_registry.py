"""What registering bgpy tasks records.  Pure Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

__all__ = ["BgpyTasks"]


@dataclass
class BgpyTasks:
    """
    The bgpy task functions of a bridge.

    @ivar init_task: C{init_task(client) -> dict}.
    @ivar exec_task: C{exec_task(client, state, exec_args) -> dict}.
    @ivar exit_task: C{exit_task(client, state, exit_args) -> None}.
    @ivar allow_modules: modules whose task functions bgpy clients may name.
    """

    init_task: Optional[Callable[..., Any]] = None
    exec_task: Optional[Callable[..., Any]] = None
    exit_task: Optional[Callable[..., Any]] = None
    allow_modules: Tuple[str, ...] = ()
