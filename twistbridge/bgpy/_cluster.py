"""
bgpy with one writer across bridge instances sharing a Redis broker (the
C{broker} setting, C{--broker redis://host:port/db}).

The tasks run on the instance holding the bgpy lease; every other instance
forwards its clients' INIT, EXEC and EXIT there and answers its clients
with what comes back.  What lives in Redis (names start with
C{twistbridge:<db>:bgpy:}):

  - C{lease}: the id of the instance running the tasks, with an expiry its
    holder renews (L{LEASE_TTL}).  A holder that could not renew stops
    running tasks before the lease may have expired in Redis.
  - C{state}: JSON, C{{"initialized": ..., "tasks": ..., "state": ...}}:
    the state the last task left, and which task functions are in force
    (C{null}: the configured ones; else C{"module:name"} of each).
  - C{req:<id>}: the answer to request C{<id>}, written by the same script
    as the state it produced, if the lease is still this holder's and the
    request was not given up (C{{"cancelled": true}}, set by a requester
    that waited too long).  So an answered request's state is in Redis
    before its client gets the answer, and a request given up never runs.
  - C{requests} (channel): forwarded requests, which only the holder
    takes; C{reply:<instance>} (channel): answers to that instance, and
    twice a second the ids of its requests the holder still has (queued or
    running), so that a task longer than L{REQUEST_TIMEOUT} is waited for
    as long as its holder lives and holds the lease (up to C{max_wait}).

Requests and answers are JSON (a forwarded request carries the message's
arguments; INIT's task functions as C{"module:name"}), as the state is:
a state that does not come back from JSON equal to itself is refused at
INIT (and an EXEC that returns one fails, the state left as it was).

(Over 400 lines: the lease, the requests of both sides and the task runs
share one state and one connection, which splitting would scatter.)
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistbridge._redisconn import (
    RELEASE,
    RENEW,
    RedisBrokerBase,
)
from twistbridge.bgpy._pickle import RefusedGlobal, load_task
from twistbridge.bgpy._tasks import (
    ALREADY_INITIALIZED,
    INIT_OK,
    NO_TASKS,
    NOT_INITIALIZED,
    TASK_KEYS,
    TaskSet,
    call_init,
    describe_failure,
)
from twistbridge.config import BrokerAddress
from twistbridge.errors import error_text

__all__ = ["BROKER_UNAVAILABLE", "BgpyCluster", "Reply"]

log = Logger(namespace="twistbridge.bgpy.broker")

LEASE_TTL = 3.0
"""Seconds the bgpy lease lasts unless its holder renews it."""

REQUEST_TIMEOUT = 2.0
"""
Seconds a forwarded request waits for its answer, or for the holder's next
word that it still has it (queued or running: every L{LEASE_TTL} / 6),
before it is given up.
"""

RETRY_DELAY = 0.05
"""Seconds between two tries of a request that no holder listened to."""

ANSWER_TTL = 60
"""Seconds an answer stays in Redis (for a requester that missed it)."""

BROKER_UNAVAILABLE = (
    "Broker unavailable: the bgpy state cannot be confirmed in Redis now; try again."
)
"""The answer while the lease or the state cannot be confirmed."""

# KEYS: lease, state, req:<id>; ARGV: instance, state ("=" unchanged),
# answer, answer ttl.  1 stored, 0 lease not held, -1 request given up.
_STORE = (
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if not redis.call('set', KEYS[3], ARGV[3], 'NX', 'EX', ARGV[4]) "
    "then return -1 end "
    "if ARGV[2] ~= '=' then redis.call('set', KEYS[2], ARGV[2]) end "
    "return 1"
)

#: An answer: C{{"ok", "message", "close", "response": [kind, args] | None}}.
Reply = Dict[str, Any]


def _reply(
    ok: bool, message: str = "", response: Any = None, close: bool = False
) -> Reply:
    return {"ok": ok, "message": message, "response": response, "close": close}


def stored_text(value: Any) -> str:
    """
    C{value} as JSON, if it comes back from JSON equal to itself.

    @raise ValueError: it does not (saying why).
    """
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"it is not JSON ({error_text(e)})") from None
    if json.loads(text) != value:
        raise ValueError(
            "it does not come back from JSON as it was (tuples, non-string keys?)"
        )
    return text


def task_refs(tasks: Optional[TaskSet]) -> Optional[List[str]]:
    """C{"module:name"} of each task function, or L{None} (the configured ones)."""
    if tasks is None:
        return None
    return [
        f"{f.__module__}:{f.__name__}"
        for f in (tasks.init_task, tasks.exec_task, tasks.exit_task)
    ]


def resolve_tasks(
    refs: Optional[List[str]], configured: Optional[TaskSet], policy: Any = None
) -> Any:
    """
    The L{TaskSet} of C{refs} (L{None}: C{configured}), each a plain
    function of a module this instance allows (C{policy}, a
    L{twistbridge.bgpy._pickle.TaskPolicy}; L{None}: any).

    @raise RefusedGlobal: a function that is not allowed here.
    """
    if refs is None:
        return configured
    funcs = []
    for ref in refs:
        module, name = ref.split(":", 1)
        if policy is not None and not _allowed(policy, module):
            raise RefusedGlobal(policy.refusal(module, name))
        funcs.append(load_task(module, name))
    return TaskSet(*funcs)


def _allowed(policy: Any, module: str) -> bool:
    # The module names a pickle may use, as loaded (the init file's too).
    if module in policy.allow_modules or module in policy.init_modules.values():
        return True
    return (
        policy.token_configured
        and not policy.allow_modules
        and not any(part.startswith("_") for part in module.split("."))
    )


class _Capture:
    """The C{client} a task gets on the holder: it keeps its response."""

    def __init__(self, peer: str, await_response: bool) -> None:
        self.peer = peer
        self.await_response = await_response
        self.response: Optional[Tuple[str, Any]] = None

    def respond(self, response: Any, error: bool = False) -> None:
        """Keep C{response} as the second response (the first call only)."""
        if self.response is None and self.await_response:
            self.response = ("ERROR" if error else "OK", response)

    def send(self, message: Any, await_response: bool = False) -> None:
        """What bgpy's own C{respond} calls (see L{TaskClient.send})."""
        kind = getattr(getattr(message, "type", None), "name", None)
        args = message.get_args() if hasattr(message, "get_args") else None
        if kind not in ("OK", "ERROR"):
            raise TypeError(
                f"send() takes a bgpy Message of type OK or ERROR, not {message!r}"
            )
        if isinstance(args, dict):
            args = {k: v for k, v in args.items() if k != "await_response"}
        self.respond(args, error=kind == "ERROR")


class BgpyCluster(RedisBrokerBase):
    """
    The bgpy tasks shared through Redis (see the module's docstring).

    @ivar instance: this instance's id (random, new each start).
    @ivar policy: the modules whose functions may be named as tasks (the
        L{twistbridge.bgpy._pickle.TaskPolicy} of this instance's clients),
        checked again for the names read from Redis.
    @ivar up: connected to Redis (both connections ready).
    @ivar reason: why not, for C{/health}.
    """

    def __init__(
        self,
        address: BrokerAddress,
        offloader: Any,
        configured: Optional[TaskSet],
        reactor: Any = None,
        policy: Any = None,
        lease_ttl: float = LEASE_TTL,
        request_timeout: float = REQUEST_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
        max_wait: Optional[float] = None,
    ) -> None:
        RedisBrokerBase.__init__(self, address, reactor, "bgpy")
        self.offloader = offloader
        self.configured = configured
        self.policy = policy
        self.lease_ttl = lease_ttl
        self.request_timeout = request_timeout
        #: Seconds a request waits at most, however long the holder says it
        #: still has it (the C{call_timeout} setting; L{None}: no bound).
        self.max_wait = max_wait
        self._monotonic = monotonic
        # Request id -> monotonic time of the holder's last word about it.
        self._heard: Dict[str, float] = {}
        # (Holder) the requests it has, queued or running: id -> instance.
        self._have: Dict[str, str] = {}
        self._loop: Any = None
        self._until: Optional[float] = None  # lease held until (monotonic)
        self._waiting: Dict[str, Deferred] = {}
        self._queue: DeferredQueue = DeferredQueue()
        self._stopped = False
        # The holder's copy of what Redis holds (None: to be loaded).
        self._record: Optional[Dict[str, Any]] = None
        self._tasks: Optional[TaskSet] = None
        self._pending_tasks: Optional[TaskSet] = None  # (an INIT's, until stored)
        self._listening = False  # subscribed to the requests (holder only)

    # connections -----------------------------------------------------------

    def start(self) -> None:
        """Connect (and keep reconnecting, with backoff); take the lease when free."""
        self._stopped = False
        self._redis.start(self._message, self._commands_ready, self._subscriber_ready)
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self._lease_tick)
        self._loop.clock = self.reactor
        self._loop.start(self.lease_ttl / 6, now=False).addErrback(
            lambda f: log.failure("bgpy broker: the lease task failed", f)
        )
        defer.ensureDeferred(self._work()).addErrback(
            lambda f: log.failure("bgpy broker: the task loop failed", f)
        )

    def _commands_ready(self, protocol: Any) -> Deferred:
        async def ready() -> None:
            await self._redis.prepared(protocol)
            self._commands = protocol
            self._check_up()
            self._lease_tick()

        return defer.ensureDeferred(ready())

    def _subscriber_ready(self, protocol: Any) -> Deferred:
        async def ready() -> None:
            await self._redis.prepared(protocol)
            channels = [self._reply_channel(self.instance)]
            await protocol.subscribe([c.encode("utf-8") for c in channels])
            self._subscriber = protocol
            self._listening = False
            self._check_up()
            self._listen()

        return defer.ensureDeferred(ready())

    def _listen(self) -> None:
        # Only the holder listens to the requests: a requester whose PUBLISH
        # reached nobody knows at once that no instance holds the lease.
        subscriber = self._subscriber
        wanted = self._until is not None
        if subscriber is None or wanted == self._listening:
            return
        self._listening = wanted
        channel = (self.prefix + "requests").encode("utf-8")
        call = subscriber.subscribe if wanted else subscriber.unsubscribe
        try:
            d: Deferred = call([channel])
        except Exception:
            d = defer.fail()
        d.addErrback(
            lambda f: log.debug(
                "bgpy broker: (un)subscribing: {e}", e=f.getErrorMessage()
            )
        )

    def _reply_channel(self, instance: str) -> str:
        return f"{self.prefix}reply:{instance}"

    def _check_up(self) -> None:
        up = self._commands is not None and self._subscriber is not None
        if up and not self.up:
            log.info(
                "bgpy broker: connected to Redis at {where}",
                where=self.address.describe(),
            )
            self.reason = ""
        self.up = up

    def _lost(self, protocol: Any) -> None:
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
            log.warn("bgpy broker: {reason}; retrying", reason=reason)
        self.reason = reason
        self.up = False

    def _cmd(self, name: str, *args: Any, **kwargs: Any) -> Deferred:
        commands = self._commands
        if commands is None or not getattr(commands, "_ready", False):
            return defer.fail(ConnectionError("not connected to Redis"))
        try:
            d: Deferred = getattr(commands, name)(*args, **kwargs)
        except Exception:
            return defer.fail()
        return d

    def stop(self) -> Deferred:
        """Give up the lease (if held) and disconnect; the state stays in Redis."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()

        async def stop() -> None:
            if self._until is not None and self._commands is not None:
                try:
                    await self._cmd(
                        "eval", RELEASE, [self.prefix + "lease"], [self.instance]
                    )
                except Exception as e:
                    log.warn(
                        "bgpy broker: could not give up the lease ({error}): "
                        "it expires by itself",
                        error=e,
                    )
            self._until = None
            self._queue.put(None)
            await self._redis.stop()

        return defer.ensureDeferred(stop())

    def status(self) -> Dict[str, Any]:
        """C{{"up", "holder", "reason"?}} for C{/health}."""
        body: Dict[str, Any] = {"up": self.up, "holder": self.holds()}
        if not self.up:
            body["reason"] = self.reason
        return body

    # the lease -------------------------------------------------------------

    def holds(self) -> bool:
        """Whether this instance may run tasks now (its lease held, with margin)."""
        until = self._until
        margin = self.lease_ttl / 6
        return until is not None and self._monotonic() < until - margin

    def _lose(self, why: str) -> None:
        if self._until is not None:
            log.warn("bgpy broker: the tasks stop running here: {why}", why=why)
        self._until = None
        self._record = None
        self._listen()

    def _lease_tick(self) -> None:
        if self._until is not None and not self.holds():
            self._lose("the lease could not be renewed in time")
        if self._commands is None or self._stopped:
            return
        sent = self._monotonic()
        key = self.prefix + "lease"
        ttl_ms = int(self.lease_ttl * 1000)
        if self.holds():
            self._still_have()
        if self._until is not None:
            d = self._cmd("eval", RENEW, [key], [self.instance, str(ttl_ms)])
            d.addCallback(self._renewed, sent)
        else:
            d = self._cmd(
                "set", key, self.instance, pexpire=ttl_ms, only_if_not_exists=True
            )
            d.addCallback(self._acquired, sent)
        d.addErrback(
            lambda f: log.debug("bgpy broker: lease: {e}", e=f.getErrorMessage())
        )

    def _still_have(self) -> None:
        # Tell each requesting instance which of its requests are still here.
        by_instance: Dict[str, List[str]] = {}
        for request_id, instance in self._have.items():
            by_instance.setdefault(instance, []).append(request_id)
        now = self._monotonic()
        for request_id in by_instance.pop(self.instance, []):
            if request_id in self._waiting:
                self._heard[request_id] = now
        for instance, ids in by_instance.items():
            self._cmd(
                "publish", self._reply_channel(instance), json.dumps({"have": ids})
            ).addErrback(lambda f: None)

    def _renewed(self, result: Any, sent: float) -> None:
        if self._until is None:
            return
        if result == 1:
            self._until = sent + self.lease_ttl
        else:
            self._lose("the lease was lost (taken, or Redis lost it)")

    def _acquired(self, result: Any, sent: float) -> None:
        if result in (None, 0, False) or self._stopped:
            return
        self._until = sent + self.lease_ttl
        self._record = None
        self._listen()
        log.info("bgpy broker: the tasks run on this instance")
        if self.configured is not None:  # the first holder ever runs init_task
            self._queue.put(
                ({"id": "start:" + uuid.uuid4().hex, "kind": "start"}, None)
            )

    # requests (any instance) -------------------------------------------------

    def request(
        self,
        kind: str,
        args: Dict[str, Any],
        peer: str,
        awaited: bool,
        tasks: Optional[TaskSet] = None,
        refused: Optional[str] = None,
    ) -> Deferred:
        """
        Run the C{init}, C{exec} or C{exit} task on the holder.

        @return: a L{Deferred} firing with a L{Reply} (it never fails).
        """
        return defer.ensureDeferred(
            self._request(kind, args, peer, awaited, tasks, refused)
        )

    async def _request(
        self,
        kind: str,
        args: Dict[str, Any],
        peer: str,
        awaited: bool,
        tasks: Optional[TaskSet],
        refused: Optional[str],
    ) -> Reply:
        args = {k: v for k, v in args.items() if k not in TASK_KEYS}
        try:
            stored_text(args)
        except ValueError as e:
            return _reply(
                False, f"{kind.upper()} arguments cannot go through the broker: {e}."
            )
        request_id = uuid.uuid4().hex
        request: Dict[str, Any] = {
            "id": request_id,
            "from": self.instance,
            "kind": kind,
            "args": args,
            "peer": peer,
            "awaited": awaited,
            "tasks": task_refs(tasks),
            "refused": refused,
        }
        if not self.up:
            return _reply(False, BROKER_UNAVAILABLE)
        d: Deferred = Deferred()
        self._waiting[request_id] = d
        deadline = self._monotonic() + self.request_timeout
        try:
            if self.holds():
                self._have[request_id] = self.instance
                self._queue.put((request, d))
            else:
                text = json.dumps(request)
                # No holder listening (between two holders): ask again
                # until one takes the lease, or the time is up.
                while not await self._cmd("publish", self.prefix + "requests", text):
                    if self._monotonic() + RETRY_DELAY >= deadline:
                        raise defer.TimeoutError()
                    await deferLater(self.reactor, RETRY_DELAY, lambda: None)
                    if self.holds():
                        self._have[request_id] = self.instance
                        self._queue.put((request, d))
                        break
            self._heard[request_id] = self._monotonic()
            self._wait(request_id, d, self._monotonic())
            return await d
        except defer.TimeoutError:
            return await self._give_up(request_id)
        except Exception as e:
            log.debug("bgpy broker: request failed: {e}", e=e)
            return _reply(False, BROKER_UNAVAILABLE)
        finally:
            self._waiting.pop(request_id, None)
            self._heard.pop(request_id, None)

    def _wait(self, request_id: str, d: Deferred, started: float) -> None:
        # Time C{d} out once the holder said nothing of it for
        # request_timeout seconds, or after max_wait in all.
        def check() -> None:
            if d.called:
                return
            now = self._monotonic()
            quiet = now - self._heard.get(request_id, started)
            bound = self.max_wait is not None and now - started >= self.max_wait
            if quiet >= self.request_timeout or bound:
                d.errback(defer.TimeoutError())
                return
            left = self.request_timeout - quiet
            if self.max_wait is not None:
                left = min(left, self.max_wait - (now - started))
            self.reactor.callLater(max(0.01, left), check)

        self.reactor.callLater(self.request_timeout, check)

    async def _give_up(self, request_id: str) -> Reply:
        # Never run from now on, unless it already ran: then its answer.
        key = f"{self.prefix}req:{request_id}"
        try:
            given_up = await self._cmd(
                "set",
                key,
                json.dumps({"cancelled": True}),
                expire=ANSWER_TTL,
                only_if_not_exists=True,
            )
            if given_up in (None, 0, False):
                answer = json.loads(await self._cmd("get", key))
                if "ok" in answer:
                    return answer
        except Exception as e:
            log.debug("bgpy broker: giving up a request failed: {e}", e=e)
        return _reply(False, BROKER_UNAVAILABLE)

    def _message(self, channel: bytes, message: bytes) -> None:
        name = channel.decode("utf-8", "replace")[len(self.prefix) :]
        try:
            body = json.loads(message)
            if name == "requests":
                if self.holds() and body.get("kind") in ("init", "exec", "exit"):
                    self._have[str(body["id"])] = str(body["from"])
                    self._queue.put((body, None))
            elif name.startswith("reply:") and "have" in body:
                now = self._monotonic()
                for request_id in body["have"]:
                    if request_id in self._waiting:
                        self._heard[request_id] = now
            elif name.startswith("reply:"):
                d = self._waiting.get(body["id"])
                if d is not None and not d.called:
                    d.callback(body["reply"])
        except Exception:
            log.failure("bgpy broker: a message from Redis could not be handled")

    # the holder ----------------------------------------------------------------

    async def _work(self) -> None:
        while not self._stopped:
            item = await self._queue.get()
            if item is None:
                return
            request, d = item
            try:
                reply = await self._serve(request)
            except Exception:
                log.failure("bgpy broker: a request failed", Failure())
                reply = _reply(False, "Internal error.")
            finally:
                self._have.pop(str(request.get("id")), None)
            if reply is None:
                continue
            if d is not None:
                if not d.called:
                    d.callback(reply)
            elif request.get("from"):
                self._cmd(
                    "publish",
                    self._reply_channel(request["from"]),
                    json.dumps({"id": request["id"], "reply": reply}),
                ).addErrback(lambda f: None)

    async def _load(self) -> None:
        text = await self._cmd("get", self.prefix + "state")
        record = json.loads(text) if text is not None else None
        self._tasks = (
            resolve_tasks(record["tasks"], self.configured, self.policy)
            if record is not None and record["initialized"]
            else None
        )
        self._record = record

    async def _serve(self, request: Dict[str, Any]) -> Optional[Reply]:
        if not self.holds():
            return _reply(False, BROKER_UNAVAILABLE)
        try:
            if self._record is None:
                await self._load()
        except Exception as e:
            log.warn("bgpy broker: the state could not be loaded: {e}", e=e)
            self._record = None
            return _reply(False, BROKER_UNAVAILABLE)
        kind = request["kind"]
        if kind == "start":
            if self._record is not None:
                return None  # (already started, by this holder or another)
        record, reply = await self._run(request)
        state_text = "=" if record is None else json.dumps(record)
        try:
            stored = await self._cmd(
                "eval",
                _STORE,
                [
                    self.prefix + "lease",
                    self.prefix + "state",
                    f"{self.prefix}req:{request['id']}",
                ],
                [self.instance, state_text, json.dumps(reply), str(ANSWER_TTL)],
            )
        except Exception as e:
            log.warn("bgpy broker: the state could not be stored: {e}", e=e)
            self._record = None  # (Redis may or may not have it: load again)
            return _reply(False, BROKER_UNAVAILABLE)
        if stored == 0:
            self._lose("the lease was lost (taken, or Redis lost it)")
            return _reply(False, BROKER_UNAVAILABLE)
        if stored != 1:
            return None  # given up by its requester, which answered already
        if record is not None:
            self._record = record
            if kind in ("init", "start"):
                self._tasks = self._pending_tasks
        if kind == "start":
            log.info("bgpy: initialized")
            return None
        return reply

    async def _run(
        self, request: Dict[str, Any]
    ) -> Tuple[Optional[Dict[str, Any]], Reply]:
        """Run the task: (the new record or None when unchanged, the answer)."""
        kind = request["kind"]
        current = self._record or {"initialized": False}
        client = _Capture(request.get("peer", ""), bool(request.get("awaited")))
        offload = self.offloader.in_thread
        if kind in ("init", "start"):
            if current["initialized"]:
                return None, _reply(False, ALREADY_INITIALIZED)
            if request.get("refused"):
                return None, _reply(False, request["refused"], close=True)
            try:
                tasks = resolve_tasks(
                    request.get("tasks"), self.configured, self.policy
                )
            except RefusedGlobal as e:
                return None, _reply(False, f"Refused: {e}.", close=True)
            if tasks is None:
                return None, _reply(False, NO_TASKS)
            try:
                state = await offload(call_init, tasks.init_task, client)
            except Exception as e:
                log.failure("bgpy: init_task raised", Failure())
                return None, _reply(False, describe_failure("init", e))
            try:
                stored_text(state)
            except ValueError as e:
                return None, _reply(
                    False,
                    f"The state cannot be stored in the broker: {e}; "
                    "with --broker, init_task must return JSON values.",
                )
            self._pending_tasks = tasks
            refs = request.get("tasks")
            return {"initialized": True, "tasks": refs, "state": state}, _reply(
                True, INIT_OK
            )
        tasks = self._tasks
        if not current["initialized"] or tasks is None:
            return None, _reply(False, NOT_INITIALIZED)
        # A fresh copy (from JSON): a task that fails leaves nothing behind.
        state = json.loads(json.dumps(current["state"]))
        args = request.get("args", {})
        if kind == "exec":
            try:
                new = await offload(tasks.exec_task, client, state, args)
            except Exception as e:
                log.failure("bgpy: exec_task raised", Failure())
                return None, _reply(False, describe_failure("exec", e))
            try:
                stored_text(new)
            except ValueError as e:
                return None, _reply(
                    False,
                    f"exec_task returned a state that cannot be stored in the "
                    f"broker: {e}; the state is unchanged.",
                )
            record: Dict[str, Any] = {**current, "state": new}
            return record, self._answer(client, True, "")
        try:
            await offload(tasks.exit_task, client, state, args)
        except Exception as e:
            log.failure("bgpy: exit_task raised", Failure())
            ok, message = False, describe_failure("exit", e)
        else:
            ok, message = True, ""
        log.info("bgpy: exited; the state is uninitialized")
        return {"initialized": False, "tasks": None, "state": None}, self._answer(
            client, ok, message
        )

    def _answer(self, client: _Capture, ok: bool, message: str) -> Reply:
        response = client.response
        if response is not None:
            try:
                stored_text(response[1])
            except ValueError as e:
                response = (
                    "ERROR",
                    {"message": f"The response cannot go through the broker: {e}."},
                )
        return _reply(ok, message, list(response) if response is not None else None)
