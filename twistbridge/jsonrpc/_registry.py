"""
What registering a JSON-RPC method records: one L{RpcMethod} per name (the
function's own and its C{_alias} names) at one path.  Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from twistbridge.handlers import Handler, resolve

__all__ = ["RpcMethod", "normalize_path", "rpc_entries"]


@dataclass
class RpcMethod:
    """
    One JSON-RPC method.

    @ivar path: the HTTP path of its dispatcher (C{"/rpc"}, C{"/api"}, ...).
    @ivar name: the method name clients call.
    @ivar handler: the resolved callable.
    @ivar jsonp: the JSONP fallback for this method alone (L{None}: the
        path's C{jsonp} option).
    """

    path: str
    name: str
    handler: Handler
    jsonp: Optional[bool] = None


def normalize_path(path: str) -> str:
    """C{"api/"} and C{"/api"} are the same dispatcher: C{"/api"}."""
    return "/" + path.strip("/")


def rpc_entries(
    func: Callable[..., Any],
    path: str = "/rpc",
    name: Optional[str] = None,
    run_in: Optional[str] = None,
    jsonp: Optional[bool] = None,
) -> List[RpcMethod]:
    """The L{RpcMethod} entries of one function: its name and its C{_alias} names."""
    method_name = name or getattr(func, "__name__", None) or repr(func)
    handler = resolve(func, run_in, method_name)
    aliases = getattr(func, "_alias", None) or []
    if isinstance(aliases, str):
        aliases = [aliases]
    return [
        RpcMethod(normalize_path(path), n, handler, jsonp)
        for n in [method_name, *aliases]
    ]
