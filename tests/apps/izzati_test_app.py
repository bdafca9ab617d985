"""An izzati app for tests/izzati: one callback, behaviour chosen by text["action"]."""

import hashlib
import threading
import time

from twisted.internet import defer

from twistbridge import Bridge, file_return

bridge = Bridge()
calls = {"n": 0}
lock = threading.Lock()


def digest(f):
    h = hashlib.sha256()
    while True:
        block = f.read(1 << 20)
        if not block:
            break
        h.update(block)
    return h.hexdigest()


async def later(value):
    return value


@bridge.izzati
def upload(text, data):
    with lock:
        calls["n"] += 1
    action = text.get("action", "hash")
    if action == "calls":
        return {"calls": calls["n"]}
    if action == "file":
        return file_return(text["path"])
    if action == "raise":
        raise ValueError(text.get("message", "boom"))
    if action == "sleep":
        time.sleep(
            float(text["seconds"])
        )  # sleep-ok: a slow callback is the behaviour under test
        return {"slept": True}
    if action == "save":
        return {"saved": [f.save(text["dir"]) for f in data]}
    if action == "bytes":
        return b"\x00\x01raw"
    if action == "str":
        return "plain text \u00e9"
    if action == "deferred":
        return defer.succeed({"from": "deferred"})
    if action == "coroutine":
        return later({"from": "coroutine"})
    return {
        "text": text,
        "files": [
            {
                "filename": f.filename,
                "name": f.name,
                "content_type": f.content_type,
                "size": f.size,
                "sha256": digest(f),
            }
            for f in data
        ],
    }
