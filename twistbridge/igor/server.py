"""Igor's C{igor.server} module: C{IgorServer} and C{CONFIG}."""

from twistbridge.igor._compat import CONFIG, IgorServer

__all__ = ["CONFIG", "IgorServer"]
