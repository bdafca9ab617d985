"""
The Igor file server and symbolic links, on a real socket: links that stay
inside the root are followed, links leading out are refused, and a
directory swapped for a link while a request is being served cannot lead
out either (files are opened component by component, never by path).
"""

import os

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor, threads

from twistbridge.igor import _fileserver
from twistbridge.igor._fileserver import build_file_site


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_bytes(b"inside\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.txt").write_bytes(b"SECRET\n")
    os.symlink(root / "sub", root / "alias")  # stays inside
    os.symlink(root / "sub" / "a.txt", root / "alias.txt")  # stays inside
    os.symlink("sub/../../outside", root / "sneaky")  # relative, leads out
    os.symlink(tmp_path / "outside" / "a.txt", root / "out.txt")
    os.symlink(tmp_path / "outside", root / "out")
    return tmp_path


@pytest.fixture
def port(tree):
    listening = reactor.listenTCP(
        0, build_file_site(str(tree / "root"), "127.0.0.1"), interface="127.0.0.1"
    )
    yield listening.getHost().port
    listening.stopListening()


def get(port, path):
    response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    return response.status_code, response.content


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "path, answer",
    [
        ("/sub/a.txt", (200, b"inside\n")),
        ("/alias/a.txt", (200, b"inside\n")),
        ("/alias.txt", (200, b"inside\n")),
        ("/out.txt", (404, b"Not found\n")),
        ("/out/a.txt", (404, b"Not found\n")),
        ("/out/", (404, b"Not found\n")),
        ("/sneaky/a.txt", (404, b"Not found\n")),
    ],
)
async def test_links(port, path, answer):
    assert await threads.deferToThread(get, port, path) == answer


@pytest_twisted.ensureDeferred
async def test_directory_swapped_for_a_link_mid_request(port, tree, monkeypatch):
    root = tree / "root"
    real_open = os.open
    swapped = []

    def open_then_swap(path, flags, *args, dir_fd=None, **kwargs):
        # Just before the file itself is opened, replace its directory by
        # a link to the outside: a server that opened by path would now
        # send outside/a.txt.
        if path == "a.txt" and dir_fd is not None and not swapped:
            os.rename(root / "sub", root / "sub.old")
            os.symlink(tree / "outside", root / "sub")
            swapped.append(True)
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(_fileserver.os, "open", open_then_swap)
    answer = await threads.deferToThread(get, port, "/sub/a.txt")
    monkeypatch.undo()
    assert swapped == [True]
    assert answer == (200, b"inside\n")
    # and now that the link is in place, it is refused
    assert await threads.deferToThread(get, port, "/sub/a.txt") == (404, b"Not found\n")


@pytest_twisted.ensureDeferred
async def test_directory_listing_shows_names_only_of_the_opened_directory(port):
    status, body = await threads.deferToThread(get, port, "/sub/")
    assert status == 200
    assert b"a.txt" in body
    status, body = await threads.deferToThread(get, port, "/alias/")
    assert status == 200 and b"a.txt" in body and b"SECRET" not in body
