"""
C{bgpy.core.sockets.ClientSocket}, the type of the C{client} a task gets
(task files annotate with it): here the server's L{TaskClient}.
"""

from twistbridge.bgpy._runtime import TaskClient

ClientSocket = TaskClient

__all__ = ["ClientSocket"]
