"""Igor's pure core: message validation, dispatch decisions and encoding."""

from __future__ import annotations

from typing import Any, Callable, Dict


def flatten(api: Dict[str, Any], separator: str = ".") -> Dict[str, Callable[..., Any]]:
    """Flatten a nested action dict: C{{"events": {"create": f}}} -> C{{"events.create": f}}."""
    flat: Dict[str, Callable[..., Any]] = {}
    for key, value in api.items():
        if isinstance(value, dict):
            for sub, func in flatten(value, separator).items():
                flat[f"{key}{separator}{sub}"] = func
        else:
            flat[key] = value
    return flat
