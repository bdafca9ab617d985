"""Fixtures shared by every test module."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from twistbridge.testing import BridgeProcess, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")


def environ_with(*paths, drop=(), **extra):
    """
    A copy of this process's environment for a program a test starts: its
    C{PYTHONPATH} begins with C{paths} (such as L{APPS}, the test apps), the
    variables named in C{drop} are removed and C{extra} is set.
    """
    env = dict(os.environ)
    first = [str(path) for path in paths]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*first, env.get("PYTHONPATH")]))
    for name in drop:
        env.pop(name, None)
    env.update(extra)
    return env


def apps_environ(**extra):
    """L{environ_with} the test apps (tests/apps) first on C{PYTHONPATH}."""
    return environ_with(APPS, **extra)


@pytest.fixture
def apps_env():
    """An environment whose PYTHONPATH finds the test apps in tests/apps."""
    return apps_environ()


def debian_nginx_conf(site, tmp):
    """
    C{site} (an nginx site, as a page shows it) in what Debian's
    /etc/nginx/nginx.conf wraps a site in, minus its root paths: every file
    nginx writes is under C{tmp}.
    """
    indented = re.sub(r"(?m)^", "    ", site)
    return f"""
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{indented}
}}
"""


@pytest.fixture(scope="session")
def nginx_conf():
    """debian_nginx_conf(site, tmp): an nginx.conf running C{site} as a user."""
    return debian_nginx_conf


@pytest.fixture(scope="module")
def demo_server():
    """The demo app in a real `twistd -n bridge` on ephemeral ports."""
    with BridgeProcess() as server:
        yield server


# -- a program of the manual (an example, a page's program), as a process ----


class Program:
    """
    A child process (stdout and stderr together) whose output a thread
    reads into C{output}: a program of the manual, run as its page says.
    """

    def __init__(self, args, cwd=None, env=None):
        self.process = subprocess.Popen(
            [str(a) for a in args],
            cwd=None if cwd is None else str(cwd),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.process.stdout:
            self.output += raw.decode("utf-8", "replace")

    def _running(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"exited with {self.process.returncode}:\n{self.output}")

    def address(self, pattern, timeout=30.0):
        """Wait until the output matches C{pattern}; return its first group."""

        def found():
            self._running()
            match = re.search(pattern, self.output)
            return match.group(1) if match else None

        return wait_for(found, timeout, what=pattern)

    def listening(self, port, timeout=30.0):
        """Wait until something accepts connections on 127.0.0.1:C{port}."""

        def accepts():
            self._running()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(accepts, timeout, what=f"a listener on port {port}")

    def stop(self):
        """SIGTERM, wait (killing it past 20 s); return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode


def _programs():
    started = []

    def start(args, cwd=None, env=None):
        running = Program(args, cwd, env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


#: Start a program (L{Program}: C{program(args, cwd=None, env=None)}); every
#: one still running is stopped when the test ends.
program = pytest.fixture(_programs, name="program")

#: The same, stopped when the test module ends (for a server tests only read).
module_program = pytest.fixture(_programs, scope="module", name="module_program")


# -- an echo server and its client -------------------------------------------


class Echo:
    """
    An echo server's protocol factory, to listen with, and a blocking client
    of it: C{exchange} sends C{data} and returns what came back (run it in a
    thread, C{threads.deferToThread}, while the reactor serves).
    """

    @staticmethod
    def factory():
        """A factory of protocols that write back what they receive."""
        from twisted.internet.protocol import Factory, Protocol

        class EchoProtocol(Protocol):
            def dataReceived(self, data):
                self.transport.write(data)

        return Factory.forProtocol(EchoProtocol)

    @staticmethod
    def exchange(address, data=b"ping"):
        """
        Send C{data} to C{address} and read as many bytes back: a port on
        127.0.0.1, a C{(host, port)} pair (IPv6 when the host has a colon) or
        a Unix socket path.
        """
        import socket

        if isinstance(address, int):
            family, address = socket.AF_INET, ("127.0.0.1", address)
        elif isinstance(address, str):
            family = socket.AF_UNIX
        else:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(address)
            s.sendall(data)
            received = b""
            while len(received) < len(data):
                chunk = s.recv(64)
                if not chunk:
                    break
                received += chunk
            return received


@pytest.fixture
def echo():
    """An echo server's factory and a client of it (L{Echo})."""
    return Echo()


def cut_at(data, points):
    """C{data} cut at C{points} (each taken modulo its length), no empty piece."""
    marks = sorted({p % (len(data) + 1) for p in points})
    pieces, last = [], 0
    for p in marks:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


@pytest.fixture(scope="session")
def cut():
    """cut(data, points): the pieces a property test feeds a parser."""
    return cut_at


def pytest_report_header(config):
    return f"python: {sys.executable}"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "long: takes ten seconds or more (a build, a browser, the originals' "
        "pauses): run first, so that no worker is left with it at the end",
    )
    config.addinivalue_line(
        "markers",
        "one_worker: the module's tests so marked run in one xdist worker, one "
        "after the other (a module-scoped server they share starts once a run)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """
    The tests marked C{long} first, the rest in their order; those marked
    C{one_worker} in an C{xdist_group} named after their module (before
    pytest-xdist reads the groups).
    """
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
    for item in items:
        if item.get_closest_marker("one_worker"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


# -- a real browser: Debian's Chromium under ChromeDriver ---------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_missing():
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} missing: `make browser-deps` as root installs Debian's {package}"
    return None


def start_chromium(profile, javascript=True):
    """Debian's Chromium, headless, with a fresh profile, under ChromeDriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-quic",
        "--disable-sync",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if not javascript:
        options.add_argument("--blink-settings=scriptEnabled=false")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 900)
    return driver


def _chromium(javascript):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="twistbridge-chromium-")
    driver = start_chromium(profile, javascript=javascript)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser():
    """Headless Chromium under ChromeDriver (Selenium)."""
    yield from _chromium(True)


@pytest.fixture
def browser_without_javascript():
    """The same, with JavaScript switched off."""
    yield from _chromium(False)


@pytest.fixture
def ipv6_loopback():
    """Skip, saying why, on a machine without an IPv6 loopback (::1)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"this machine has no IPv6 loopback (::1): {e}")
