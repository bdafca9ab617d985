"""
The Redis broker: bridge instances sharing one Redis share their Igor
clients (the C{broker} setting, C{--broker redis://host:port/db}).

What lives in Redis (every name starts with C{twistbridge:<db>:igor:}, the
database number included because Redis channels span databases):

  - C{all} (channel): broadcasts, each prefixed with its sender's instance
    id; a sender delivers to its own clients directly and skips its own
    message, so each client gets a broadcast once.
  - C{to:<instance>} (channel): messages to one client of that instance.
  - C{presence} (channel) and C{client:<id>} (keys, expiring unless their
    instance renews them): which instance has which client.  Each instance
    keeps a copy of that map, so a send from any thread (or from the
    reactor) knows at once whether a client id exists anywhere.
  - C{next_id}: C{INCRBY} blocks of automatic client ids.
  - C{lease:<process_id>}: the instance running that Igor process, with an
    expiry its holder renews (or takes again, should Redis have lost it).
  - C{session:<id>}: the session of a client that left, for the takeover
    window (L{twistbridge.igor._sessions}), claimed atomically by the
    instance it reconnects to.

The client is txredisapi's protocol over Twisted endpoints, reconnected by
C{ClientService} with backoff.  While Redis is unreachable the local
clients keep working (broadcasts and sends reach this instance's clients),
L{RedisBroker.status} says why for C{/health}, and the processes stop here once their
lease may have expired.  Broadcasts and sends for the other instances wait
meanwhile in a bounded queue (L{twistbridge.igor._outbox}), published in
order once Redis is back.

(Over 400 lines: the connections, the presence map, the ids and the leases
share one state and one reconnection, which splitting would scatter.)
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistbridge._redisconn import RELEASE as _RELEASE
from twistbridge._redisconn import RedisBrokerBase, redis_client_available
from twistbridge.config import BrokerAddress
from twistbridge.igor._core import UnknownClientError, normalize_client_id
from twistbridge.igor._outbox import Outbox

__all__ = ["RedisBroker", "redis_client_available"]

log = Logger(namespace="twistbridge.igor.broker")

#: Seconds a lease lasts unless its holder renews it.
LEASE_TTL = 3.0
#: Seconds a client's presence key lasts unless its instance renews it.
PRESENCE_TTL = 15.0
#: Presence keys renewed by one script (one round trip) at most.
PRESENCE_BATCH = 1000
#: Automatic client ids taken from Redis at a time.
ID_BLOCK = 100
#: Seconds a reconnected instance waits at most for the instances it knew
#: to subscribe again before it publishes what it queued meanwhile.
FLUSH_WAIT = 5.0

# Renew lease KEYS[1] for ARGV[2] ms if ARGV[1] holds it, or take it again
# if Redis lost it (restarted without its data) while its holder's own
# expiry had not come yet: 1, else 0 (another instance took it meanwhile).
# No other instance can have held it since (it would still be there), so
# the process stays where it ran instead of stopping and moving while its
# holder's broadcasts are silenced.
_RENEW = (
    "local holder = redis.call('get', KEYS[1]) "
    "if holder == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
    "if holder then return 0 end "
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1"
)

# Set each of KEYS (presence keys) to ARGV[1] (this instance), expiring in
# ARGV[2] seconds: a presence renewal in one round trip.
_PRESENT = (
    "for _, key in ipairs(KEYS) do "
    "redis.call('set', key, ARGV[1], 'EX', ARGV[2]) end return #KEYS"
)

# Take lease KEYS[1] for ARGV[1] for ARGV[2] ms if it is free and ARGV[3] is
# 1 (1); 2 if it is free, 0 if another instance holds it.  An instance takes
# a free lease only once it found it free for a while (lease_ttl / 4, two
# of the holder's renewals): a holder whose lease Redis lost renews it
# first (see _RENEW) and keeps its process.
_TAKE = (
    "if redis.call('exists', KEYS[1]) == 1 then return 0 end "
    "if ARGV[3] ~= '1' then return 2 end "
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1"
)

# Raise the id counter to at least ARGV[1] (a Redis that lost its data must
# not hand out ids that are still in use).
_RAISE = (
    "if tonumber(redis.call('get', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
    "redis.call('set', KEYS[1], ARGV[1]) end return 1"
)


def _id_text(client_id: Any) -> str:
    return json.dumps(client_id)


class RedisBroker(RedisBrokerBase):
    """
    A broker shared through Redis (see the module's docstring).

    @ivar instance: this instance's id (random, new each start).
    @ivar remote: client id to the instance it is connected to, for the
        clients of the other instances.
    @ivar up: both connections to Redis are ready.
    @ivar reason: why it is not up (C{/health}).
    """

    shared = True

    def __init__(
        self,
        address: BrokerAddress,
        reactor: Any = None,
        lease_ttl: float = LEASE_TTL,
        presence_ttl: float = PRESENCE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        RedisBrokerBase.__init__(self, address, reactor, "igor")
        self.lease_ttl = lease_ttl
        self.presence_ttl = presence_ttl
        self._monotonic = monotonic
        self.remote: Dict[Any, str] = {}
        self.local: Set[Any] = set()
        self._ids: List[int] = []
        self._fetching_ids = False
        self._high_water = 0
        self._ticks: List[Any] = []
        self._deliver_all: Callable[[bytes], None] = lambda payload: None
        self._deliver: Callable[[Any, bytes], bool] = lambda cid, payload: False
        # process id -> monotonic time until which this instance may run it.
        self._leases: Dict[Any, float] = {}
        # process id -> monotonic time its free lease was first seen free.
        self._free: Dict[Any, float] = {}
        self._processes: List[Any] = []
        self._start: Callable[[Any], None] = lambda pid: None
        self._stop: Callable[[Any], None] = lambda pid: None
        self._stopped = False
        # What waits for Redis (see _outbox), and the instances to wait for.
        self.outbox = Outbox()
        self._peers: Set[str] = set()
        self._flushing = False
        #: Called with a client id that another instance announces.
        self.on_arrival: Callable[[Any], None] = lambda client_id: None

    # connections -----------------------------------------------------------

    def start(
        self,
        deliver_all: Callable[[bytes], None],
        deliver: Callable[[Any, bytes], bool],
    ) -> None:
        """Connect (and keep reconnecting, with backoff) to Redis."""
        self._deliver_all = deliver_all
        self._deliver = deliver
        self._stopped = False
        self._redis.start(self._message, self._commands_ready, self._subscriber_ready)
        from twisted.internet.task import LoopingCall

        for interval, call in (
            (self.lease_ttl / 6, self._lease_tick),
            (self.presence_ttl / 3, self._presence_tick),
        ):
            loop = LoopingCall(call)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("igor broker: a periodic task failed", f)
            )
            self._ticks.append(loop)
        log.info(
            "igor broker: Redis at {where} (instance {instance})",
            where=self.address.describe(),
            instance=self.instance,
        )

    def _commands_ready(self, protocol: Any) -> Deferred:
        async def ready() -> None:
            await self._redis.prepared(protocol)
            self._commands = protocol
            self._check_up()
            known = [self._high_water, *self.local, *self.remote]
            high = max(i for i in known if isinstance(i, int))
            await self._cmd("eval", _RAISE, [self.prefix + "next_id"], [str(high)])
            self._refill_ids()
            for client_id in list(self.local):  # (back after an outage)
                self._publish("presence", f"+{self.instance} {_id_text(client_id)}")
            self._presence_tick()
            self._lease_tick()

        return defer.ensureDeferred(ready())

    def _subscriber_ready(self, protocol: Any) -> Deferred:
        async def ready() -> None:
            await self._redis.prepared(protocol)
            channels = [
                self.prefix + "all",
                self.prefix + "presence",
                self._to(self.instance),
            ]
            await protocol.subscribe([c.encode("utf-8") for c in channels])
            self._subscriber = protocol
            self._check_up()
            self._presence_tick()

        return defer.ensureDeferred(ready())

    def _to(self, instance: str) -> str:
        return f"{self.prefix}to:{instance}"

    def _check_up(self) -> None:
        up = self._commands is not None and self._subscriber is not None
        if up and not self.up:
            log.info(
                "igor broker: connected to Redis at {where}",
                where=self.address.describe(),
            )
            self.reason = ""
        self.up = up
        if up:
            self._flush_soon()

    def _lost(self, protocol: Any) -> None:
        self._peers.update(self.remote.values())
        self._free.clear()  # (seen free before the outage: seen anew after)
        if protocol is self._commands:
            self._commands = None
        if protocol is self._subscriber:
            self._subscriber = None
        if self.up and not self._stopped:
            self._unreachable("connection lost")
        self.up = False

    def _unreachable(self, why: str) -> None:
        reason = f"Redis at {self.address.describe()} unreachable: {why}"
        if reason != self.reason and not self._stopped:
            log.warn("igor broker: {reason}; retrying", reason=reason)
        self.reason = reason
        self.up = False

    def stop(self) -> Deferred:
        """Give up the leases held, forget this instance's clients, disconnect."""
        self._stopped = True
        for loop in self._ticks:
            if loop.running:
                loop.stop()
        self._ticks = []

        async def stop() -> None:
            commands = self._commands
            if commands is not None:
                try:
                    for process_id in list(self._leases):
                        await self._cmd(
                            "eval",
                            _RELEASE,
                            [self._lease_key(process_id)],
                            [self.instance],
                        )
                    for client_id in list(self.local):
                        await self._cmd("delete", self._client_key(client_id))
                except Exception as e:
                    log.warn(
                        "igor broker: could not give up leases and clients in "
                        "Redis ({error}): they expire by themselves",
                        error=e,
                    )
            self._leases.clear()
            await self._redis.stop()

        return defer.ensureDeferred(stop())

    def status(self) -> Optional[Dict[str, Any]]:
        """C{{"up": ..., "address": ..., "reason"?: ...}} for C{/health}."""
        body: Dict[str, Any] = {
            "up": self.up,
            "address": self.address.describe(),
            "instance": self.instance,
            "processes": sorted(str(p) for p in self._leases if self.holds(p)),
            "queued": len(self.outbox),
            "dropped": self.outbox.dropped,
        }
        if not self.up:
            body["reason"] = self.reason
        return body

    def _cmd(self, name: str, *args: Any, **kwargs: Any) -> Deferred:
        # A command, failing (never raising) while Redis is out of reach.
        commands = self._commands
        if commands is None or not getattr(commands, "_ready", False):
            return defer.fail(ConnectionError("not connected to Redis"))
        try:
            d: Deferred = getattr(commands, name)(*args, **kwargs)
        except Exception:
            return defer.fail()
        return d

    def _run(self, what: str, d: Deferred) -> None:
        d.addErrback(
            lambda f: log.debug(
                "igor broker: {what} failed: {f}", what=what, f=f.getErrorMessage()
            )
        )

    # ids -------------------------------------------------------------------

    def next_id(self) -> Optional[int]:
        """The next id of the block taken from Redis; L{None} while none is left."""
        client_id = self._ids.pop(0) if self._ids else None
        if len(self._ids) < ID_BLOCK // 2:
            self._refill_ids()
        if client_id is None:
            log.warn(
                "igor broker: no client id from Redis yet: using a local id, "
                "which another instance may also use"
            )
        return client_id

    def _refill_ids(self) -> None:
        if (
            self._fetching_ids
            or self._commands is None
            or len(self._ids) >= ID_BLOCK // 2
        ):
            return
        self._fetching_ids = True

        def got(last: int) -> None:
            self._high_water = max(self._high_water, int(last))
            self._ids.extend(range(int(last) - ID_BLOCK + 1, int(last) + 1))

        def done(result: Any) -> Any:
            self._fetching_ids = False
            return result

        d = self._cmd("incrby", self.prefix + "next_id", ID_BLOCK)
        d.addCallback(got)
        d.addBoth(done)
        self._run("taking client ids", d)

    # presence --------------------------------------------------------------

    def _client_key(self, client_id: Any) -> str:
        return f"{self.prefix}client:{_id_text(client_id)}"

    def joined(self, client_id: Any) -> None:
        """A local client took C{client_id}: claim it in Redis, tell the others."""
        self.local.add(client_id)
        self.remote.pop(client_id, None)
        if self._commands is not None:
            self._run(
                "presence",
                self._cmd(
                    "set",
                    self._client_key(client_id),
                    self.instance,
                    expire=int(self.presence_ttl),
                ),
            )
            self._publish("presence", f"+{self.instance} {_id_text(client_id)}")

    def left(self, client_id: Any) -> None:
        """A local client gave up C{client_id}."""
        self.local.discard(client_id)
        if self._commands is not None:
            self._run(
                "presence",
                self._cmd(
                    "eval", _RELEASE, [self._client_key(client_id)], [self.instance]
                ),
            )
            self._publish("presence", f"-{self.instance} {_id_text(client_id)}")

    def _presence_tick(self) -> Optional[Deferred]:
        commands = self._commands
        if commands is None:
            return None

        async def tick() -> None:
            # One round trip per PRESENCE_BATCH clients (one script setting
            # all their keys), not one per client.
            keys = [self._client_key(client_id) for client_id in list(self.local)]
            for start in range(0, len(keys), PRESENCE_BATCH):
                await self._cmd(
                    "eval",
                    _PRESENT,
                    keys[start : start + PRESENCE_BATCH],
                    [self.instance, str(int(self.presence_ttl))],
                )
            remote: Dict[Any, str] = {}
            cursor = 0
            while True:
                cursor, keys = await self._cmd(
                    "scan", cursor, pattern=self.prefix + "client:*", count=500
                )
                if keys:
                    owners = await self._cmd("mget", keys)
                    for key, owner in zip(keys, owners):
                        if owner is None or owner == self.instance:
                            continue
                        remote[json.loads(key[len(self.prefix) + 7 :])] = owner
                if int(cursor) == 0:
                    break
            self.remote = remote

        d = defer.ensureDeferred(tick())
        self._run("refreshing presence", d)
        return None

    # messages ----------------------------------------------------------------

    def _publish(self, channel: str, message: Any) -> None:
        if self._commands is not None:
            self._run(
                "publishing", self._cmd("publish", self.prefix + channel, message)
            )

    def publish(self, payload: bytes) -> None:
        """
        To the other instances' clients, through Redis (encoded once here);
        queued while Redis is away.
        """
        self._out(self.prefix + "all", self.instance.encode("ascii") + payload)

    def send(self, client_id: Any, payload: bytes) -> None:
        """
        To a client of another instance (any thread).

        @raise UnknownClientError: no instance has it, as far as the last
            presence news tell.
        """
        key = (
            normalize_client_id(client_id)
            if isinstance(client_id, (str, int)) and not isinstance(client_id, bool)
            else None
        )
        instance = self.remote.get(key) if key is not None else None
        if instance is None:
            raise UnknownClientError(client_id)
        message = _id_text(key).encode("utf-8") + b"\n" + payload
        self.reactor.callFromThread(self._send, instance, message)

    def _send(self, instance: str, message: bytes) -> None:
        self._out(self._to(instance), message)

    def _message(self, channel: bytes, message: bytes) -> None:
        name = channel.decode("utf-8", "replace")[len(self.prefix) :]
        try:
            if name == "all":
                if message[:32] != self.instance.encode("ascii"):
                    self._deliver_all(message[32:])
            elif name == "presence":
                text = message.decode("utf-8")
                owner, id_text = text[1:].split(" ", 1)
                if owner == self.instance:
                    return
                client_id = json.loads(id_text)
                if text[0] == "+":
                    self.remote[client_id] = owner
                    self.on_arrival(client_id)
                elif self.remote.get(client_id) == owner:
                    del self.remote[client_id]
            elif name.startswith("to:"):
                id_bytes, payload = message.split(b"\n", 1)
                if not self._deliver(json.loads(id_bytes), payload):
                    log.debug("igor broker: a message for a client gone meanwhile")
        except Exception:
            log.failure("igor broker: a message from Redis could not be handled")

    # processes -------------------------------------------------------------

    def _lease_key(self, process_id: Any) -> str:
        return f"{self.prefix}lease:{process_id}"

    def run_processes(
        self,
        process_ids: Iterable[Any],
        start: Callable[[Any], None],
        stop: Callable[[Any], None],
    ) -> None:
        """Run each process while this instance holds its lease."""
        self._processes = list(process_ids)
        self._start = start
        self._stop = stop
        self._lease_tick()

    def holds(self, process_id: Any) -> bool:
        """Whether this instance holds C{process_id}'s lease now (any thread)."""
        until = self._leases.get(process_id)
        return until is not None and self._monotonic() < until

    def _lose(self, process_id: Any, why: str) -> None:
        if self._leases.pop(process_id, None) is not None:
            log.warn(
                "igor broker: process {process_id} stops here: {why}",
                process_id=process_id,
                why=why,
            )
            self._stop(process_id)

    def _lease_tick(self) -> None:
        # Stop before the lease may have expired in Redis: its expiry there
        # runs from when Redis got the request, after `sent` here.
        margin = self.lease_ttl / 6
        now = self._monotonic()
        for process_id, until in list(self._leases.items()):
            if now >= until - margin:
                self._lose(process_id, "its lease could not be renewed in time")
        commands = self._commands
        if commands is None or self._stopped:
            return
        ttl_ms = str(int(self.lease_ttl * 1000))
        for process_id in self._processes:
            sent = self._monotonic()
            key = self._lease_key(process_id)
            if process_id in self._leases:
                d = self._cmd("eval", _RENEW, [key], [self.instance, ttl_ms])
                d.addCallback(self._renewed, process_id, sent)
            else:
                free_since = self._free.get(process_id)
                take = (
                    free_since is not None and sent - free_since >= self.lease_ttl / 4
                )
                d = self._cmd(
                    "eval", _TAKE, [key], [self.instance, ttl_ms, "1" if take else "0"]
                )
                d.addCallback(self._acquired, process_id, sent)
            self._run("lease", d)

    def _renewed(self, result: Any, process_id: Any, sent: float) -> None:
        if process_id not in self._leases:
            return
        if result == 1:
            self._leases[process_id] = sent + self.lease_ttl
        else:
            self._lose(process_id, "its lease was lost (taken, or Redis lost it)")

    def _acquired(self, result: Any, process_id: Any, sent: float) -> None:
        if result == 2:  # free: taken at a later tick if still free then
            self._free.setdefault(process_id, sent)
            return
        self._free.pop(process_id, None)
        if result != 1 or self._stopped:
            return
        self._leases[process_id] = sent + self.lease_ttl
        log.info(
            "igor broker: process {process_id} runs on this instance",
            process_id=process_id,
        )
        self._start(process_id)

    # what waits for Redis ------------------------------------------------

    def _out(self, channel: str, message: bytes) -> None:
        # Published now, or queued behind what waits already (in order).
        if not self.up or self._flushing or len(self.outbox):
            self.outbox.put(channel, message)
            return
        self._run("publishing", self._cmd("publish", channel, message))

    def _flush_soon(self) -> None:
        if self._flushing or not self.up or not len(self.outbox):
            return
        self._flushing = True
        defer.ensureDeferred(self._flush()).addErrback(
            lambda f: log.failure("igor broker: publishing the queue failed", f)
        )

    async def _flush(self) -> None:
        # The instances known before the outage have to subscribe again to
        # hear what was queued: wait for them (a while at most), then publish.
        from twisted.internet.task import deferLater

        commands = self._commands
        deadline = self._monotonic() + FLUSH_WAIT
        wanted = len(self._peers) + 1
        try:
            while self._monotonic() < deadline and commands is self._commands:
                try:
                    reply = await self._cmd(
                        "execute_command", "PUBSUB", "NUMSUB", self.prefix + "all"
                    )
                    if self.up and int(reply[1]) >= wanted:
                        break
                except Exception:
                    pass
                await deferLater(self.reactor, 0.05, lambda: None)
            if commands is None or commands is not self._commands:
                return  # lost again: the next connection publishes it
            items = self.outbox.take_all()
            self._peers = set()
            for channel, message in items:
                self._run("publishing", self._cmd("publish", channel, message))
            log.info(
                "igor broker: published {n} message(s) queued while Redis was "
                "away ({dropped} dropped so far)",
                n=len(items),
                dropped=self.outbox.dropped,
            )
        finally:
            self._flushing = False
            if commands is not self._commands:
                self._flush_soon()  # (connected anew meanwhile)

    # sessions ------------------------------------------------------------

    def _session_key(self, client_id: Any) -> str:
        return f"{self.prefix}session:{_id_text(client_id)}"

    def store_session(self, client_id: Any, record: str, ttl: float) -> None:
        """
        Keep a session's record (L{twistbridge.igor._sessions}) for C{ttl}
        seconds; not while Redis is away (its client then resumes here only).
        """
        if self._commands is None:
            return
        self._run(
            "storing a session",
            self._cmd(
                "set",
                self._session_key(client_id),
                record,
                pexpire=max(1, int(ttl * 1000)),
            ),
        )

    def claim_session(self, client_id: Any, token: Any, check_token: bool) -> Deferred:
        """
        Settle an C{introduce_self} to C{client_id} in one step: fires with
        C{["session", record]} (claimed: no other instance can claim it),
        C{["none"]} (no record: the name is this instance's now),
        C{["connected"]} (another instance has that client) or
        C{["refused"]} (C{check_token} and C{token} is not the record's).
        Fails while Redis is away.
        """
        d = self._cmd(
            "eval",
            _CLAIM,
            [self._session_key(client_id), self._client_key(client_id)],
            [
                self.instance,
                str(int(self.presence_ttl)),
                token if isinstance(token, str) else "",
                "1" if check_token else "0",
            ],
        )
        return d.addCallback(lambda reply: [str(part) for part in reply])


# KEYS: the session record, the client's presence key.  ARGV: this instance,
# the presence expiry, the resume token given, whether to check it.  A
# record is claimed (deleted) only when its token digest matches; the name
# is then this instance's (its presence key set) unless another instance
# has it connected.
_CLAIM = """
local record = redis.call('get', KEYS[1])
if record then
  if ARGV[4] == '1' and string.sub(record, 1, 40) ~= redis.sha1hex(ARGV[3]) then
    return {'refused'}
  end
else
  local owner = redis.call('get', KEYS[2])
  if owner and owner ~= ARGV[1] then return {'connected'} end
end
redis.call('set', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[2]))
if not record then return {'none'} end
redis.call('del', KEYS[1])
return {'session', record}
"""
