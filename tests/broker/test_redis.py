"""
Two `twistd bridge` instances sharing one real redis-server (--broker):
broadcasts, sends to a client of the other instance, client ids, Redis
going away and coming back, and the process lease.
"""

import os
import signal
import time

import requests

from twistbridge.testing import wait_for

from .conftest import holder_of, ws


def datas(listener, action):
    return [m["data"] for m in listener.of("relay", action)]


def test_one_pair_while_redis_loses_its_data_then_goes_away_and_comes_back(
    instances, listen, redis_server
):
    """
    One pair of instances through what happens to their Redis, in turn:
    broadcasts, sends and ids across them; Redis losing its data; Redis
    going away and coming back.
    """
    holder, other = holder_of(instances(2))
    here, there = listen(ws(holder)), listen(ws(other))
    broadcast_send_and_ids_across_instances(holder, other, here, there)
    a_holder_keeps_its_lease_when_redis_loses_its_data(
        holder, other, here, there, redis_server
    )
    redis_away_and_back(holder, other, here, there, redis_server, listen)


def broadcast_send_and_ids_across_instances(holder, other, here, there):
    assert other.health()["broker"]["processes"] == []
    me, them = here.call("whoami", stream="w")[0], there.call("whoami", stream="w")[0]
    assert me["pid"] == holder.process.pid and them["pid"] == other.process.pid
    assert isinstance(me["client_id"], int) and isinstance(them["client_id"], int)
    assert me["client_id"] != them["client_id"]

    assert here.call("announce", "one", stream="a1") == ["sent"]
    assert here.call("announce", "two", stream="a2") == ["sent"]
    for listener in (here, there):
        wait_for(
            lambda x=listener: len(datas(x, "announce")) >= 2, 10, what="announces"
        )
    # A last round trip on each connection: a duplicate would be in by then.
    here.call("whoami", stream="w2")
    there.call("whoami", stream="w2")
    assert datas(here, "announce") == ["one", "two"]
    assert datas(there, "announce") == ["one", "two"]

    # The holder learns of the other instance's client through Redis.
    stream = iter(range(1000))
    wait_for(
        lambda: (
            here.call(
                "direct",
                {"to": them["client_id"], "text": "psst"},
                stream=f"d{next(stream)}",
            )
            == ["sent"]
        ),
        10,
        what="a send to the other instance's client",
    )
    wait_for(lambda: datas(there, "direct") == ["psst"], 10, what="the direct message")
    there.call("whoami", stream="w3")
    assert datas(there, "direct") == ["psst"]
    assert datas(here, "direct") == []
    assert here.call("direct", {"to": 987654, "text": "x"}, stream="u") == [
        'unknown: No client with given id exists. Id="987654"'
    ]
    # Only the holder ticks (every 0.2 s: the test may have been quicker).
    wait_for(lambda: datas(there, "tick"), 10, what="a tick")
    assert {m["pid"] for m in datas(there, "tick")} == {holder.process.pid}


def a_holder_keeps_its_lease_when_redis_loses_its_data(
    holder, other, here, there, redis_server
):
    """
    Redis restarted without its data (FLUSHALL here, without the reconnection
    delay): the holder takes its lease again at its next renewal instead of
    stopping the process (which silenced its broadcasts while the lease
    moved), and its next broadcast reaches every client once.

    The other instance is stopped (SIGSTOP) meanwhile: it may take a lease
    it found free for lease_ttl / 4 (0.75 s, tests/broker/test_lease.py),
    which a loaded machine can make longer than the holder's wait for its
    next renewal; what is checked is that the holder takes it back.
    """
    key = "twistbridge:0:igor:lease:relay"
    owner = holder.health()["broker"]["instance"].encode()
    assert redis_server.command("GET", key) == owner
    other.signal(signal.SIGSTOP)
    try:
        assert redis_server.command("FLUSHALL") == b"+OK"
        wait_for(
            lambda: redis_server.command("GET", key) != b"$-1",
            10,
            what="the lease back",
        )
        assert redis_server.command("GET", key) == owner
    finally:
        other.signal(signal.SIGCONT)
    assert "stops here" not in holder.output
    announced = (len(datas(here, "announce")), len(datas(there, "announce")))
    assert here.call("announce", "after", stream="a") == ["sent"]
    for listener, before in zip((here, there), announced):
        wait_for(
            lambda x=listener, n=before: len(datas(x, "announce")) > n,
            10,
            what="the broadcast",
        )
    # A last round trip on each connection: a duplicate would be in by then.
    here.call("whoami", stream="w4")
    there.call("whoami", stream="w4")
    assert datas(here, "announce")[2:] == datas(there, "announce")[2:] == ["after"]
    assert holder.health()["broker"]["processes"] == ["relay"]
    assert other.health()["broker"]["processes"] == []


def redis_away_and_back(a, b, la, lb, redis_server, listen):
    redis_server.kill()
    for instance in (a, b):
        body = wait_for(
            lambda i=instance: (lambda h: h if h["status"] == "degraded" else None)(
                i.health()
            ),
            10,
            what="/health to say degraded",
        )
        assert body["broker"]["up"] is False
        assert body["reason"].startswith(
            f"Redis at redis://127.0.0.1:{redis_server.port}/0 unreachable: "
        )
        assert requests.get(instance.url("/health"), timeout=5).status_code == 200
    assert la.call("whoami", stream="x")[0]["pid"] == a.process.pid
    assert lb.call("whoami", stream="x")[0]["pid"] == b.process.pid
    # Without Redis no instance may be sure it holds the lease: none ticks.
    wait_for(
        lambda: all(i.health()["broker"]["processes"] == [] for i in (a, b)),
        10,
        what="the lease to lapse",
    )

    redis_server.start()
    for instance in (a, b):
        wait_for(lambda i=instance: i.health()["status"] == "ok", 15, what="ok again")
    holder, other = holder_of([a, b])
    # Ids handed out after Redis lost its data still differ from those in use.
    fresh = listen(ws(other)).call("whoami", stream="y")[0]["client_id"]
    old = {
        la.call("whoami", stream="z")[0]["client_id"],
        lb.call("whoami", stream="z")[0]["client_id"],
    }
    assert fresh not in old


def the_holder(instances):
    """The one instance of C{instances} running the relay process (waited for)."""

    def find():
        held = [i for i in instances if i.health()["broker"]["processes"] == ["relay"]]
        return held[0] if len(held) == 1 else None

    return wait_for(find, 15, what="one instance to hold the relay lease")


def runs(values):
    """C{values} with each run of equal ones made one."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def test_a_clean_stop_hands_the_lease_over_at_once_and_a_death_after_its_expiry(
    instances, listen
):
    """
    Three instances: the holder stops cleanly and one of the others takes
    the lease at once; that one is killed (kill -9, no goodbye) and the
    last takes the lease once it expired.
    """
    started = instances(3)
    first = the_holder(started)
    rest = [i for i in started if i is not first]
    watchers = {i: listen(ws(i)) for i in rest}
    for watcher in watchers.values():
        wait_for(lambda w=watcher: datas(w, "tick"), 10, what="a tick")

    assert first.stop() == 0
    stopped = time.monotonic()
    second = the_holder(rest)
    # Given up, not left to expire (which takes at least 2.5 s after the
    # holder's last renewal, and it renewed until its broker stopped, then
    # the wait of a free lease, 0.75 s; the release, that wait only).
    assert time.monotonic() - stopped < 2.5
    (last,) = [i for i in rest if i is not second]
    watcher = watchers[last]
    wait_for(
        lambda: {"pid": second.process.pid} in datas(watcher, "tick"),
        10,
        what="a tick from the instance that took the lease",
    )

    second.process.kill()
    killed = time.monotonic()
    wait_for(
        lambda: {"pid": last.process.pid} in datas(watcher, "tick"),
        10,
        what="the last instance to run the process",
    )
    assert time.monotonic() - killed < 6.0
    # One holder at a time, in turn.
    pids = [m["pid"] for m in datas(watcher, "tick")]
    assert runs(pids) == [first.process.pid, second.process.pid, last.process.pid]
    assert last.health()["broker"]["processes"] == ["relay"]
    assert os.path.exists(f"/proc/{last.process.pid}")


def test_a_unix_socket_broker(redis_server, listen, instance_class):
    url = f"unix://{redis_server.socket}?db=1"
    with instance_class(url) as instance:
        wait_for(lambda: instance.health()["status"] == "ok", 15, what="connected")
        watcher = listen(ws(instance))
        wait_for(lambda: datas(watcher, "tick"), 10, what="a tick")
        broker = instance.health()["broker"]
        assert (broker["up"], broker["address"], broker["processes"]) == (
            True,
            url,
            ["relay"],
        )
    # Its keys are in database 1, named for it; a clean stop gave the lease up.
    assert redis_server.command("GET", "twistbridge:1:igor:next_id", db=1) == b"100"
    assert (
        redis_server.command("EXISTS", "twistbridge:1:igor:lease:relay", db=1) == b":0"
    )
    assert redis_server.command("DBSIZE", db=0) == b":0"


def test_a_tls_broker(tmp_path, redis_server, listen, instance_class):
    """rediss://: TLS to Redis, its certificate checked for the host name."""
    import shutil
    import socket
    import ssl
    import subprocess

    from twistbridge.testing import free_port

    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("no openssl command to make the test certificate with")
    key, cert = tmp_path / "redis.key", tmp_path / "redis.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-auth-clients", "no",
         "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(cert))

        def ping():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as s:
                        s.sendall(b"PING\r\n")
                        return s.recv(16) == b"+PONG\r\n"
            except OSError:
                return False

        wait_for(ping, 10, what="redis-server over TLS")
        url = f"rediss://localhost:{port}/0"
        instance = instance_class(url)
        instance.env["SSL_CERT_FILE"] = str(cert)  # trust the test's certificate
        with instance:
            wait_for(lambda: instance.health()["status"] == "ok", 15, what="connected")
            watcher = listen(ws(instance))
            wait_for(lambda: datas(watcher, "tick"), 10, what="a tick")
            assert instance.health()["broker"]["address"] == url
        # Without that trust, the same server's certificate is refused.
        untrusting = instance_class(url)
        untrusting.env.pop("SSL_CERT_FILE", None)
        with untrusting:
            body = wait_for(
                lambda: (
                    lambda h: (
                        h
                        if "certificate verify failed" in h.get("reason", "")
                        else None
                    )
                )(untrusting.health()),
                15,
                what="the certificate to be refused",
            )
            assert body["status"] == "degraded"
    finally:
        server.kill()
        server.wait()


def redis_server_binary():
    import shutil

    return shutil.which("redis-server") or "/usr/bin/redis-server"
