"""
An izzati app for tests/izzati/test_splice.py: the test app's callback, its
answer with C{"spliced"} added (the bytes moved from a pipe into a file by
splicing, so far, in this process).

IZZATI_SPLICE_FAIL makes every splice fail with EINVAL: "socket" on the
socket's side, "file" on the file's side.  IZZATI_SPLICE_PIPE sets the bytes
one splice moves (a small one makes delimiters fall across splices).

The answer also gives C{"fallocated"}: the C{[offset, length]} of every
preallocation asked for so far (the splicing module's C{fallocate}), and
C{"on_disk"}: the size of each uploaded file's temporary file, or L{None}
for a file held in memory.  IZZATI_SPLICE_FALLOCATE="none" takes
C{fallocate} away (a system without it); "unsupported" makes it fail with
EOPNOTSUPP; a number sets how far ahead it allocates (C{PREALLOCATE}).
"""

import ctypes
import errno
import io
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

fallocated = []
_real_fallocate = _splice._fallocate
_preallocation = os.environ.get("IZZATI_SPLICE_FALLOCATE")
if _preallocation and _preallocation.isdigit():
    _splice.PREALLOCATE = int(_preallocation)


def recording_fallocate(fd, mode, offset, length):
    fallocated.append([offset, length])
    if _preallocation == "unsupported":
        ctypes.set_errno(errno.EOPNOTSUPP)
        return -1
    return _real_fallocate(fd, mode, offset, length)


_splice._fallocate = None if _preallocation == "none" else recording_fallocate


def on_disk(item):
    stream = item.stream
    return None if isinstance(stream, io.BytesIO) else os.fstat(stream.fileno()).st_size


bridge = Bridge()


@bridge.izzati
def answer(text, data):
    result = upload(text, data)
    if isinstance(result, dict):
        result["spliced"] = spliced["bytes"]
        result["fallocated"] = list(fallocated)
        result["on_disk"] = [on_disk(item) for item in data]
    return result
