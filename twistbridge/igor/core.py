"""
Igor's C{igor.core} module: C{flatten}, C{IgorProcess}, C{Stream},
C{ProcessOutput} and C{handler_wrapper}.
"""

from twistbridge.igor._compat import IgorProcess
from twistbridge.igor._core import flatten
from twistbridge.igor._objects import ProcessOutput, Stream, handler_wrapper

__all__ = ["IgorProcess", "ProcessOutput", "Stream", "flatten", "handler_wrapper"]
