"""`twistbridge.izzati`: Backend, background and file_return as izzati's, with izzati's client."""

import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest
import requests
from izzati import Frontend

from twistbridge.izzati import Backend, background, file_return
from twistbridge.izzati._core import FileReturn
from twistbridge.testing import free_port, wait_for

SCRIPT = textwrap.dedent(
    """
    import sys
    from twistbridge.izzati import Backend, file_return

    def callback(text, data, greeting, punctuation="."):
        if text.get("want") == "file":
            return file_return(sys.argv[1])
        return {
            "greeting": greeting + punctuation,
            "text": text,
            "files": [[f.filename, f.size, f.read().decode()] for f in data],
        }

    # As izzati's quickstart: no __main__ guard, extra args and kwargs.
    b = Backend(callback, args=("hello",), kwargs={"punctuation": "!"}, max_upload_size="1K")
    b.run(host="127.0.0.1", port=0)
    """
)


class Child:
    """A Python script serving a Backend, with the port it logged."""

    def __init__(self, args):
        self.process = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.output = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.output += line.decode("utf-8", "replace")

    def port(self):
        match = re.search(r"http listening on 127\.0\.0\.1:(\d+)", self.output)
        return int(match.group(1)) if match else None

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        self.thread.join(5)


@pytest.fixture(scope="module")
def backend_script(tmp_path_factory):
    base = tmp_path_factory.mktemp("izzati-compat")
    script = base / "serve.py"
    script.write_text(SCRIPT)
    returned = base / "returned.txt"
    returned.write_text("file body")
    child = Child([str(script), str(returned)])
    try:
        wait_for(child.port, 20, what=f"Backend listening: {child.output}")
        yield f"http://127.0.0.1:{child.port()}/", child
    finally:
        child.stop()


def test_backend_run_with_izzati_frontend(backend_script, tmp_path):
    url, _ = backend_script
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hi there")
    with open(path, "rb") as f:
        answer = Frontend(url).send({"a": "1", "b": ["x", "y"]}, f)
    assert answer == {
        "greeting": "hello!",
        "text": {"a": "1", "b": ["x", "y"]},
        "files": [["hello.txt", 8, "hi there"]],
    }
    assert Frontend(url).send({"want": "file"}) == b"file body"


def test_backend_max_upload_size(backend_script):
    url, child = backend_script
    prepared = requests.Request(
        "POST", url, files={"file": ("big.bin", b"b" * 4096)}
    ).prepare()
    r = requests.Session().send(prepared)
    assert r.status_code == 413
    assert r.json() == {
        "error": f"request body too large: {len(prepared.body)} bytes, the limit is 1024 bytes"
    }


def test_backend_stops_cleanly_on_sigterm(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    child = Child([str(script), "unused"])
    wait_for(child.port, 20, what="Backend listening")
    child.process.terminate()
    assert child.process.wait(10) == 0
    child.thread.join(5)
    assert "Traceback" not in child.output


def callback_with_queue(q, text, data, suffix):
    q.put(text["name"] + suffix)
    return {"queued": True, "files": [f.filename for f in data]}


def test_backend_background_returns_process_and_queue(tmp_path):
    port = free_port()
    b = Backend(callback_with_queue, args=("!",), background=True)
    p, q = b.run(host="127.0.0.1", port=port)
    try:
        assert p.is_alive() and q is b.q
        url = f"http://127.0.0.1:{port}/"

        def up():
            try:
                return requests.get(url + "health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, 20, what="background Backend up")
        path = tmp_path / "f.txt"
        path.write_bytes(b"data")
        with open(path, "rb") as f:
            assert Frontend(url).send({"name": "ada"}, f) == {
                "queued": True,
                "files": ["f.txt"],
            }
        assert q.get(timeout=10) == "ada!"
    finally:
        p.terminate()
        p.join(10)
    assert not p.is_alive()


def greeter(q, greeting, out=None):
    out.put(greeting + ", " + q.get(timeout=10))


def test_background_runs_target_with_queue_first():
    import multiprocessing

    out = multiprocessing.get_context("fork").Queue()
    p, q = background(greeter, args=("Hello",), kwargs={"out": out})
    try:
        q.put("world")
        assert out.get(timeout=10) == "Hello, world"
        p.join(10)
        assert p.exitcode == 0 and p.daemon
    finally:
        if p.is_alive():
            p.terminate()


def test_file_return_is_the_same_object_as_the_top_level_one(tmp_path):
    import twistbridge

    assert twistbridge.file_return is file_return
    result = file_return(tmp_path / "x.json")
    assert isinstance(result, FileReturn)
    assert (result.path, result.content_type) == (
        os.fspath(tmp_path / "x.json"),
        "application/json; charset=utf-8",
    )
