"""
An izzati app for tests/izzati/test_splice.py: the test app's callback, its
answer with C{"spliced"} added (the bytes moved from a pipe into a file by
splicing, so far, in this process).

IZZATI_SPLICE_FAIL makes every splice fail with EINVAL: "socket" on the
socket's side, "file" on the file's side.  IZZATI_SPLICE_PIPE sets the bytes
one splice moves (a small one makes delimiters fall across splices).
"""

import errno
import os

from izzati_test_app import upload

from twistbridge import Bridge
from twistbridge.izzati import _splice

spliced = {"bytes": 0}
_real = _splice._splice
_fail = os.environ.get("IZZATI_SPLICE_FAIL")
if os.environ.get("IZZATI_SPLICE_PIPE"):
    _splice.PIPE_SIZE = int(os.environ["IZZATI_SPLICE_PIPE"])


def counting_splice(src, dst, count, *args, **kwargs):
    to_file = "offset_dst" in kwargs
    if _fail == ("file" if to_file else "socket"):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    moved = _real(src, dst, count, *args, **kwargs)
    if to_file:
        spliced["bytes"] += moved
    return moved


_splice._splice = counting_splice

bridge = Bridge()


@bridge.izzati
def answer(text, data):
    result = upload(text, data)
    if isinstance(result, dict):
        result["spliced"] = spliced["bytes"]
    return result
