"""
Igor sessions across bridge instances (a shared broker): a client that
leaves one instance and introduces itself to another within the takeover
window takes its session over there.

When a client leaves, its instance keeps the session as always and also
writes a copy to the broker (with the resume token's digest in C{"token"}
mode), expiring with the takeover window.  An C{introduce_self} is then
settled by the broker in one atomic step: it claims the copy (which no
other instance can then claim), or says that the name is connected on
another instance (refused as a local one is), or that the resume token does
not match (refused), or that there is no copy (the rename of one instance).
The client's next messages wait for that answer, in order.

A session travels as JSON: one that does not survive a JSON round trip
(tuples, non-string keys, objects) stays on its instance, and a warning
says so.  While the broker is unreachable, takeovers are those of one
instance.  A message sent to a client id between its leaving and its
takeover raises L{UnknownClientError} on every instance, as on one.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from typing import TYPE_CHECKING, Any, Dict, Optional, Set

from twisted.logger import Logger
from twisted.python.failure import Failure

from twistbridge.igor._core import (
    ProtocolError,
    parse_introduction,
    parse_resume_token,
    shorten,
)

if TYPE_CHECKING:
    from twistbridge.igor._hub import Hub

__all__ = ["SharedSessions", "encode_record"]

log = Logger(namespace="twistbridge.igor")

#: The token digest of a record of C{"name"} mode (no token to check).
NO_TOKEN = "-" * 40


def encode_session(session: Any) -> Optional[str]:
    """A session as JSON, or L{None} when JSON would not give it back as it is."""
    try:
        text = json.dumps(session, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    try:
        same = json.loads(text) == session
    except Exception:
        return None
    return text if same else None


def encode_record(instance: str, token: Optional[str], session_text: str) -> str:
    """
    A session's copy in the broker: the resume token's SHA-1 digest (40
    characters, L{NO_TOKEN} without one), the instance id (32), the JSON.
    """
    digest = (
        NO_TOKEN if token is None else hashlib.sha1(token.encode("utf-8")).hexdigest()
    )
    return digest + instance + session_text


def _already_connected(client_id: Any) -> ProtocolError:
    return ProtocolError(400, f'Client id "{shorten(client_id)}" is already connected')


class SharedSessions:
    """
    The sessions of one hub, shared through its broker (see the module's
    docstring).

    @ivar pending: client ids an C{introduce_self} is claiming now.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        broker: Any = hub.broker
        self.broker = broker
        self.pending: Set[Any] = set()
        self._unshareable: Set[Any] = set()
        broker.on_arrival = self.arrived

    def left(self, client_id: Any) -> None:
        """A client left: copy its session to the broker for the window."""
        ids = self.hub.ids
        session = ids.sessions.get(client_id)
        if session is None:
            return
        text = encode_session(session)
        if text is None:
            if client_id not in self._unshareable:
                self._unshareable.add(client_id)
                log.warn(
                    "igor client {client_id}: its session is not plain JSON: it "
                    "can be taken over on this instance only",
                    client_id=client_id,
                )
            return
        self._unshareable.discard(client_id)
        token = ids.tokens.get(client_id) if ids.takeover == "token" else None
        if ids.takeover == "token" and token is None:
            return
        record = encode_record(self.broker.instance, token, text)
        self.broker.store_session(client_id, record, ids.session_timeout)

    def arrived(self, client_id: Any) -> None:
        """
        Another instance has C{client_id} connected now: a session of that
        name still waiting here is not the client's any more.
        """
        ids = self.hub.ids
        if client_id in ids.clients:
            return
        call = ids.expiry.pop(client_id, None)
        if call is not None:
            call.cancel()
            ids.expire(client_id)

    def introduce(self, conn: Any, data: Any) -> None:
        """
        C{introduce_self}: ask the broker for the name (and its session),
        holding the client's next messages until it answers.
        """
        hub = self.hub
        new_id = parse_introduction(data)
        if isinstance(new_id, ProtocolError):
            return hub.refuse(conn, new_id)
        if new_id == conn.client_id:
            return None
        if new_id in hub.ids.clients or new_id in self.pending:
            return hub.refuse(conn, _already_connected(new_id))
        token = None
        if hub.ids.takeover == "token":
            token = parse_resume_token(data)
            if isinstance(token, ProtocolError):
                return hub.refuse(conn, token)
        self.pending.add(new_id)
        conn.parsing = deque()
        conn.pause_reading()
        d = self.broker.claim_session(new_id, token, hub.ids.takeover == "token")
        d.addBoth(self._claimed, conn, new_id, data)
        return None

    def _claimed(self, result: Any, conn: Any, new_id: Any, data: Any) -> None:
        hub = self.hub
        self.pending.discard(new_id)
        if conn not in hub.connections or conn.parsing is None:
            # Gone meanwhile: what was claimed goes back.
            if isinstance(result, list) and result and result[0] != "connected":
                self.broker.left(new_id)
                if result[0] == "session":
                    self.broker.store_session(
                        new_id, result[1], hub.ids.session_timeout
                    )
            return
        waiting, conn.parsing = conn.parsing, None
        old_id = conn.client_id
        claimed = isinstance(result, list) and result[:1] in (["none"], ["session"])
        refusal = self._settle(result, conn, new_id, data)
        if refusal is not None:
            hub.refuse(conn, refusal)
            if claimed:
                self.broker.left(new_id)
                if result[0] == "session":
                    self.broker.store_session(
                        new_id, result[1], hub.ids.session_timeout
                    )
        elif conn.client_id != old_id:
            hub.renamed(old_id, conn.client_id)
        hub.resume(conn, waiting)

    def _settle(
        self, result: Any, conn: Any, new_id: Any, data: Any
    ) -> Optional[ProtocolError]:
        ids = self.hub.ids
        if isinstance(result, Failure) or not isinstance(result, list) or not result:
            why = (
                result.getErrorMessage()
                if isinstance(result, Failure)
                else repr(result)
            )
            log.info(
                "igor client {client_id}: the broker could not settle its "
                "introduce_self ({why}): sessions of this instance only",
                client_id=conn.client_id,
                why=why,
            )
            return ids.introduce(conn, data)
        kind = result[0]
        if new_id in ids.clients:  # (taken here meanwhile)
            return _already_connected(new_id)
        if kind == "connected":
            return _already_connected(new_id)
        if kind == "refused":
            return ProtocolError(
                403,
                f'Client id "{shorten(new_id)}" belongs to a session '
                "awaiting its client: resuming it needs its resume_token",
            )
        if kind == "session":
            record = result[1]
            instance, text = record[40:72], record[72:]
            if not (instance == self.broker.instance and new_id in ids.expiry):
                session: Dict[str, Any] = json.loads(text)
                ids.adopt(conn, new_id, session)
                return None
        return ids.introduce(conn, data)
