"""
Igor's clients: their ids, their sessions, and who may take a session over.

A new connection gets the next free integer id and an empty session; a
client may rename itself with C{introduce_self}.  A session outlives its
client by C{session_timeout} seconds, during which a client introducing
itself with that id takes it over: by the name alone (C{takeover="name"},
Igor's rule), or only with the session's resume token (C{"token"}), which
each client is sent with L{TOKEN_STREAM} and L{TOKEN_ACTION}.

Client ids have one form (L{normalize_client_id}): automatic ids are the
integers 1, 2, ... skipping every id that is connected or whose session is
still within its takeover window.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Callable, Dict, Optional

from twisted.logger import Logger

from twistbridge.igor._core import (
    ProtocolError,
    UnknownClientError,
    encode_action,
    normalize_client_id,
    parse_introduction,
    parse_resume_token,
    shorten,
)

__all__ = ["TAKEOVER_MODES", "TOKEN_ACTION", "TOKEN_STREAM", "Clients"]

log = Logger(namespace="twistbridge.igor")

#: The C{streamId} and C{action} of the message that hands a client its
#: resume token (C{igor_takeover="token"} only).
TOKEN_STREAM = "introduce_self"
TOKEN_ACTION = "resume_token"

#: The takeover modes (the C{igor_takeover} setting).
TAKEOVER_MODES = ("name", "token")


class Clients:
    """
    The client ids and sessions of one hub.

    A connection, here, is any object with a C{client_id} and a
    C{write(payload)} (reactor thread).

    @ivar clients: connected client id to its connection.
    @ivar sessions: client id to that client's session dict.
    @ivar tokens: client id to its resume token (C{"token"} mode).
    @ivar expiry: client id to the pending deletion of its session (a
        C{DelayedCall}), for clients gone less than C{session_timeout} ago.
    @ivar session_timeout: seconds a session outlives its client.
    @ivar takeover: C{"name"} or C{"token"}.
    @ivar id_source: gives the next automatic id candidate, or L{None} for
        this hub's own counter (a shared broker hands out ids unique across
        instances).
    """

    def __init__(
        self,
        reactor: Any,
        session_timeout: float,
        takeover: str,
        id_source: Optional[Callable[[], Optional[int]]] = None,
    ) -> None:
        if takeover not in TAKEOVER_MODES:
            raise ValueError(f"takeover must be 'name' or 'token': {takeover!r}")
        self.reactor = reactor
        self.session_timeout = session_timeout
        self.takeover = takeover
        self.clients: Dict[Any, Any] = {}
        self.sessions: Dict[Any, Dict[str, Any]] = {}
        self.tokens: Dict[Any, str] = {}
        self.expiry: Dict[Any, Any] = {}
        self._next_id = 1
        self.id_source = id_source

    def add(self, conn: Any) -> None:
        """A connection opened: give it a fresh numeric id and session."""
        client_id = self._new_id()
        conn.client_id = client_id
        self.clients[client_id] = conn
        self.sessions[client_id] = {}
        if self.takeover == "token":
            self._issue_token(conn)

    def _new_id(self) -> int:
        # Never an id in use, nor one whose session awaits its takeover: a
        # client that named itself "3" must not make the next client share
        # its session.
        if self.id_source is not None:
            for _ in range(1000):
                candidate = self.id_source()
                if candidate is None:
                    break
                if not self._taken(candidate):
                    return candidate
        client_id = self._next_id
        while (
            client_id in self.clients
            or client_id in self.sessions
            or client_id in self.expiry
        ):
            client_id += 1
        self._next_id = client_id + 1
        return client_id

    def _taken(self, client_id: Any) -> bool:
        return (
            client_id in self.clients
            or client_id in self.sessions
            or client_id in self.expiry
        )

    def _issue_token(self, conn: Any) -> None:
        token = secrets.token_urlsafe(24)
        self.tokens[conn.client_id] = token
        conn.write(
            encode_action(
                TOKEN_STREAM,
                TOKEN_ACTION,
                {"client_id": conn.client_id, "resume_token": token},
            )
        )

    def remove(self, conn: Any) -> None:
        """A connection closed: keep its session for C{session_timeout} seconds."""
        client_id = conn.client_id
        if self.clients.get(client_id) is conn:
            del self.clients[client_id]
            self.expiry[client_id] = self.reactor.callLater(
                self.session_timeout, self.expire, client_id
            )

    def expire(self, client_id: Any) -> None:
        """The takeover window of C{client_id} ended: drop its session."""
        self.expiry.pop(client_id, None)
        if client_id not in self.clients:
            self.sessions.pop(client_id, None)
            self.tokens.pop(client_id, None)

    def introduce(self, conn: Any, data: Any) -> Optional[ProtocolError]:
        """
        C{introduce_self}: rename the client; a session of that name left
        less than C{session_timeout} seconds ago is taken over -- by name,
        or (C{takeover="token"}) only with its resume token.

        @return: L{None}, or the refusal to answer.
        """
        new_id = parse_introduction(data)
        if isinstance(new_id, ProtocolError):
            return new_id
        old_id = conn.client_id
        if new_id == old_id:
            return None
        if new_id in self.clients:
            return ProtocolError(
                400, f'Client id "{shorten(new_id)}" is already connected'
            )
        resumable = new_id in self.expiry
        if resumable and self.takeover == "token":
            token = parse_resume_token(data)
            if isinstance(token, ProtocolError):
                return token
            expected = self.tokens.get(new_id, "")
            if token is None or not hmac.compare_digest(
                token.encode("utf-8"), expected.encode("utf-8")
            ):
                return ProtocolError(
                    403,
                    f'Client id "{shorten(new_id)}" belongs to a session '
                    "awaiting its client: resuming it needs its resume_token",
                )
        if resumable:
            self.expiry.pop(new_id).cancel()
            self.sessions.pop(old_id, None)
        else:
            self.sessions[new_id] = self.sessions.pop(old_id, {})
        self.tokens.pop(old_id, None)
        del self.clients[old_id]
        self.clients[new_id] = conn
        conn.client_id = new_id
        log.info(
            "igor client {old_id} is now {new_id}{how}",
            old_id=old_id,
            new_id=new_id,
            how=" (session taken over)" if resumable else "",
        )
        if self.takeover == "token":
            self._issue_token(conn)
        return None

    def adopt(self, conn: Any, new_id: Any, session: Dict[str, Any]) -> None:
        """
        Rename C{conn} to C{new_id} with C{session}, a session taken over
        from another instance (its name and resume token already checked
        there): a session of that name still waiting here is replaced.
        """
        old_id = conn.client_id
        call = self.expiry.pop(new_id, None)
        if call is not None:
            call.cancel()
        self.sessions.pop(old_id, None)
        self.sessions[new_id] = session
        self.tokens.pop(old_id, None)
        self.tokens.pop(new_id, None)
        del self.clients[old_id]
        self.clients[new_id] = conn
        conn.client_id = new_id
        log.info(
            "igor client {old_id} is now {new_id} (session taken over from "
            "another instance)",
            old_id=old_id,
            new_id=new_id,
        )
        if self.takeover == "token":
            self._issue_token(conn)

    def client(self, client_id: Any) -> Any:
        """
        The connection of a client id (C{1} and C{"1"} are the same).

        @raise UnknownClientError: when none is connected.
        """
        conn = None
        if isinstance(client_id, (str, int)) and not isinstance(client_id, bool):
            conn = self.clients.get(normalize_client_id(client_id))
        if conn is None:
            raise UnknownClientError(client_id)
        return conn
