"""
izzati's documented backend examples (docs/backend-quickstart.rst), with only
the import changed, served to the real izzati Frontend; and the one-line
exit of Backend.run() on a taken port.
"""

import socket
import subprocess
import sys
import textwrap

from izzati import Frontend
from izzati_wait import wait_until_served

QUICKSTART = textwrap.dedent(
    """
    from twistbridge.izzati import Backend, file_return

    def p(text, data):
        print(text, [x.filename for x in data])
        if text.get("want") == "file":
            return file_return({path!r})
        return {{'status': 'yes'}}

    b = Backend(p)
    b.run() # The host and port can be set as well:
    """
)

BACKGROUND = textwrap.dedent(
    """
    from twistbridge.izzati import Backend, background

    def callback(text, data, q):
        print(text, [x.filename for x in data])
        q.put(text['name'])
        return {'status': 'OK'}

    def background_process(q, greeting):
        while True:
            name = q.get()
            print(greeting + ", " + name, flush=True)

    p, q = background(background_process, args=("Hello",))
    b = Backend(callback, args=(q,))
    b.run()
    """
)


def serve(program):
    process = subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    wait_until_served()
    return process


def test_quickstart(tmp_path):
    returned = tmp_path / "file.txt"
    returned.write_bytes(b"a file back\n")
    upload = tmp_path / "photo.jpg"
    upload.write_bytes(b"\xff\xd8 not really a jpeg")
    process = serve(QUICKSTART.format(path=str(returned)))
    try:
        f = Frontend("http://localhost:5020/")
        assert f.send({"a": "b"}) == {"status": "yes"}
        with open(upload, "rb") as photo:
            assert f.send({"a": "b"}, photo) == {"status": "yes"}
        assert f.send({"want": "file"}) == b"a file back\n"
    finally:
        process.terminate()
        out = process.communicate(timeout=10)[0].decode()
    assert "{'a': 'b'} []" in out
    assert "{'a': 'b'} ['photo.jpg']" in out


def test_background_process():
    process = serve(BACKGROUND)
    try:
        assert Frontend("http://localhost:5020/").send({"name": "izzati"}) == {
            "status": "OK"
        }
    finally:
        process.terminate()
        out = process.communicate(timeout=10)[0].decode()
    assert "Hello, izzati" in out


def test_port_taken_exits_with_one_line():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    program = (
        "from twistbridge.izzati import Backend\n"
        f"Backend().run(host='127.0.0.1', port={port})\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, timeout=60
        )
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"izzati backend: cannot listen on 127.0.0.1:{port}: port {port} is already in use\n"
    )
