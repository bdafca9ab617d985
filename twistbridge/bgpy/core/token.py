"""bgpy's token helpers (C{bgpy.core.token})."""

import os
from typing import Optional

from twistbridge.bgpy.core.environment import ENV_TOKEN

__all__ = ["token_create", "token_delenv", "token_getenv", "token_setenv"]


def token_create(length: int = 64) -> str:
    """A URL-safe random token (C{length} random bytes), as bgpy makes."""
    from secrets import token_urlsafe

    return token_urlsafe(length)


def token_setenv(token: Optional[str]) -> None:
    """Put C{token} in C{BGPY_TOKEN} (nothing for L{None})."""
    if token is not None:
        os.environ[ENV_TOKEN] = token


def token_getenv() -> Optional[str]:
    """The token in C{BGPY_TOKEN}, or L{None}."""
    return os.environ.get(ENV_TOKEN)


def token_delenv() -> None:
    """Remove C{BGPY_TOKEN}."""
    os.environ.pop(ENV_TOKEN, None)
