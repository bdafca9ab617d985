"""
docs/scaling.rst's deployment, as written: three `twistd bridge` instances
sharing a real redis-server, behind a real nginx with the page's site, and
websocket-client clients through nginx only.
"""

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from twistbridge.testing import free_port, wait_for

from .conftest import Instance, started_redis

ROOT = Path(__file__).resolve().parent.parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK),
    reason="nginx is not installed (make test installs Debian's nginx as root)",
)


def page_block(language):
    """The page's deployment block in C{language}, as a reader copies it."""
    text = (ROOT / "docs" / "scaling.rst").read_text("utf-8")
    section = text.split("Deployment: N instances behind nginx", 1)[1]
    block = section.split(f".. code-block:: {language}\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def documented_commands(redis_url):
    """The page's three commands, with the test's app, ports and Redis."""
    commands = []
    for n, line in enumerate(page_block("shell").splitlines(), 1):
        words = shlex.split(line)
        assert words[:4] == ["twistd", "-n", f"--pidfile=bridge{n}.pid", "bridge"]
        args = words[4:]
        options = dict(zip(args[::2], args[1::2]))
        assert sorted(options) == [
            "--app", "--bgpy-port", "--broker", "--igor-port", "--port"
        ]  # fmt: skip
        assert options["--broker"] == "redis://127.0.0.1:6379/0"
        options.update(
            {"--app": "broker_app:bridge", "--broker": redis_url, "--port": "0",
             "--igor-port": "0", "--bgpy-port": "0"}
        )  # fmt: skip
        commands.append([word for pair in options.items() for word in pair])
    assert len(commands) == 3
    return commands


def local_site(site, tmp, port, instances):
    """The page's site with the test's ports (nginx_conf wraps it as Debian does)."""
    for documented, instance in zip((5020, 5021, 5022), instances):
        site = site.replace(f"127.0.0.1:{documented};", f"127.0.0.1:{instance.port()};")
        site = site.replace(f"127.0.0.1:{documented} ", f"127.0.0.1:{instance.port()} ")
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    assert site.count("server 127.0.0.1:") == 3
    assert all(f":{i.port()} " in site for i in instances)
    return site


class Cluster:
    def __init__(self, instances, port, listen):
        self.instances = instances
        self.port = port
        self._listen = listen
        self.pids = {i.process.pid: i for i in instances}

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def connect(self):
        """A client through nginx, and the instance it landed on."""
        client = self._listen(self.url)
        me = client.call("whoami", stream="whoami")[0]
        return client, self.pids[me["pid"]]

    def alive(self):
        return [i for i in self.instances if i.process.poll() is None]

    def holder(self):
        def find():
            held = [
                i
                for i in self.alive()
                if i.health()["broker"]["processes"] == ["relay"]
            ]
            return held[0] if len(held) == 1 else None

        return wait_for(find, 15, what="one instance to hold the relay lease")

    def spread(self, n):
        """C{n} clients through nginx, on every live instance."""
        clients = [self.connect() for _ in range(n)]
        assert {i for _, i in clients} == set(self.alive())
        return clients


@contextlib.contextmanager
def deployment(tmp_path, redis_server, nginx_conf):
    """The page's three instances behind nginx: C{(instances, nginx's port)}."""
    instances = []
    nginx = None
    try:
        for args in documented_commands(redis_server.url):
            instance = Instance(redis_server.url)
            instance.args = args
            instances.append(instance.start())
        for instance in instances:
            wait_for(lambda i=instance: i.health()["status"] == "ok", 15, what="up")
        port = free_port()
        conf = tmp_path / "nginx.conf"
        site = local_site(page_block("nginx"), tmp_path, port, instances)
        conf.write_text(nginx_conf(site, tmp_path))
        check = subprocess.run(
            [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
            stderr=subprocess.DEVNULL,
        )

        def up():
            try:
                url = f"http://127.0.0.1:{port}/health"
                return requests.get(url, timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, 20, what="nginx in front of the instances")
        yield instances, port
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for instance in instances:
            instance.stop()


@pytest.fixture
def cluster(tmp_path, redis_server, listen, nginx_conf):
    """A deployment of this test's own (it kills an instance, or Redis)."""
    with deployment(tmp_path, redis_server, nginx_conf) as (instances, port):
        yield Cluster(instances, port, listen)


@pytest.fixture(scope="module")
def shared_deployment(tmp_path_factory, nginx_conf):
    """
    One deployment on a redis-server of its own for the tests that leave
    every instance and Redis up: each has clients of its own (closed after
    it) and a client id of its own.
    """
    redis_server = started_redis(tmp_path_factory.mktemp("balancer-redis"))
    try:
        tmp = tmp_path_factory.mktemp("balancer-nginx")
        with deployment(tmp, redis_server, nginx_conf) as running:
            yield running
    finally:
        redis_server.kill()


@pytest.fixture
def shared_cluster(shared_deployment, listen):
    """The shared deployment, with this test's clients."""
    instances, port = shared_deployment
    return Cluster(instances, port, listen)


def relayed(client, action):
    return [m["data"] for m in client.of("relay", action)]


@pytest.mark.one_worker
def test_a_broadcast_reaches_every_client_on_every_instance_once(shared_cluster):
    cluster = shared_cluster
    holder = cluster.holder()
    clients = cluster.spread(6)
    (sender, _), *_ = [(c, i) for c, i in clients if i is holder]
    assert sender.call("announce", "one", stream="a1") == ["sent"]
    assert sender.call("announce", "two", stream="a2") == ["sent"]
    for client, _ in clients:
        wait_for(
            lambda c=client: len(relayed(c, "announce")) >= 2, 10, what="announces"
        )
    for client, _ in clients:  # a last round trip: a duplicate would be in
        client.call("whoami", stream="last")
    assert [relayed(c, "announce") for c, _ in clients] == [["one", "two"]] * 6


@pytest.mark.one_worker
def test_a_send_to_a_client_on_another_instance(shared_cluster):
    cluster = shared_cluster
    holder = cluster.holder()
    clients = cluster.spread(3)
    sender = next(c for c, i in clients if i is holder)
    receivers = [(c, i) for c, i in clients if i is not holder]
    for n, (receiver, _) in enumerate(receivers):
        to = receiver.call("whoami", stream=f"id{n}")[0]["client_id"]
        counter = iter(range(1000))
        wait_for(
            lambda to=to, counter=counter: (
                sender.call(
                    "direct",
                    {"to": to, "text": f"for {to}"},
                    stream=f"d{next(counter)}",
                )
                == ["sent"]
            ),
            10,
            what="the holder to learn of the client",
        )
    for n, (receiver, _) in enumerate(receivers):
        to = receiver.call("whoami", stream=f"again{n}")[0]["client_id"]
        wait_for(
            lambda r=receiver, t=to: relayed(r, "direct") == [f"for {t}"],
            10,
            what="the direct message",
        )
    assert relayed(sender, "direct") == []


@pytest.mark.one_worker
def test_a_reconnect_on_another_instance_takes_the_session_over(shared_cluster):
    cluster = shared_cluster
    first, where = cluster.connect()
    first.request("introduce_self", {"client_id": "zoe"}, stream="intro")
    assert first.call("remember", "from the first", stream="r") == [["from the first"]]
    first.close()
    # Reconnect through nginx until it lands on another instance.
    while True:
        second, landed = cluster.connect()
        if landed is not where:
            break
        second.close()
    second.request("introduce_self", {"client_id": "zoe"}, stream="intro")
    assert second.call("recall", stream="r") == [{"notes": ["from the first"]}]
    assert second.call("whoami", stream="w")[0] == {
        "client_id": "zoe",
        "pid": landed.process.pid,
    }
    assert second.errors() == []


def test_the_process_moves_when_its_instance_is_killed(cluster):
    holder = cluster.holder()
    clients = cluster.spread(3)
    watchers = [c for c, i in clients if i is not holder]
    for watcher in watchers:
        wait_for(lambda w=watcher: relayed(w, "tick"), 10, what="a tick")
    holder.process.kill()  # SIGKILL: no goodbye, its lease expires
    holder.process.wait()
    killed = time.monotonic()
    new = cluster.holder()
    assert new is not holder
    for watcher in watchers:
        wait_for(
            lambda w=watcher: {"pid": new.process.pid} in relayed(w, "tick"),
            10,
            what="ticks from the new holder",
        )
    assert time.monotonic() - killed < 8.0
    for watcher in watchers:
        pids = [m["pid"] for m in relayed(watcher, "tick")]
        first = pids.index(new.process.pid)
        assert set(pids[:first]) == {holder.process.pid}
        assert set(pids[first:]) == {new.process.pid}
    # New clients through nginx land on the live instances only.
    landed = {cluster.connect()[1] for _ in range(4)}
    assert landed == set(cluster.alive()) and holder not in landed


def test_redis_stopped_and_started_again(cluster, redis_server):
    clients = cluster.spread(3)
    redis_server.kill()
    for instance in cluster.instances:
        wait_for(
            lambda i=instance: i.health()["status"] == "degraded",
            10,
            what="degraded",
        )
    # Local traffic goes on through nginx.
    for n, (client, instance) in enumerate(clients):
        me = client.call("whoami", stream=f"down{n}")[0]
        assert me["pid"] == instance.process.pid
        assert client.call("remember", "while down", stream=f"m{n}") == [["while down"]]
    redis_server.start()
    for instance in cluster.instances:
        wait_for(lambda i=instance: i.health()["status"] == "ok", 20, what="ok")
    holder = cluster.holder()
    sender = next(c for c, i in clients if i is holder)
    # Cluster traffic resumes: the first broadcast sent once every instance
    # is up again reaches every client on every instance exactly once (the
    # holder kept its lease, or took it anew, rather than losing it while
    # its broadcasts were silenced).
    assert sender.call("announce", "back", stream="back") == ["sent"]
    wait_for(
        lambda: all("back" in relayed(c, "announce") for c, _ in clients),
        10,
        what="the first broadcast after Redis returned",
    )
    for client, _ in clients:
        client.call("whoami", stream="last")  # (a duplicate would be in by then)
        assert relayed(client, "announce").count("back") == 1
    other = next((c, i) for c, i in clients if i is not holder)[0]
    to = other.call("whoami", stream="id")[0]["client_id"]
    counter = iter(range(1000))
    wait_for(
        lambda: (
            sender.call(
                "direct", {"to": to, "text": "again"}, stream=f"d{next(counter)}"
            )
            == ["sent"]
        ),
        15,
        what="a send across instances again",
    )
    wait_for(lambda: relayed(other, "direct") == ["again"], 10, what="delivered")
