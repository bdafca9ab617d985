"""The apps bench/izzati_bench.py serves with `twistd bridge` (one per port)."""

import os

from twistbridge import Bridge, file_return
from twistbridge.izzati import _splice
from twistbridge.izzati._resource import IzzatiResource

# IZZATI_BENCH_SPLICE=0: file parts are read through Python, as on a
# connection that cannot be spliced (the benchmark's "before").
if os.environ.get("IZZATI_BENCH_SPLICE") == "0":
    IzzatiResource.splice = False

# IZZATI_BENCH_SPLICING="NAME=VALUE,...": other values for the splicing
# module's integer settings (TURN, PIPE_SIZE, ...): the bench's --variant
# columns, to compare settings in one run.
for setting in filter(None, os.environ.get("IZZATI_BENCH_SPLICING", "").split(",")):
    name, value = setting.split("=")
    if not hasattr(_splice, name):
        raise SystemExit(f"IZZATI_BENCH_SPLICING: no setting {name}")
    setattr(_splice, name, int(value))


def summary(text, data):
    return {"status": "ok", "text": text, "files": [[f.filename, f.size] for f in data]}


# The default: a plain def runs in the thread pool.
bridge = Bridge()
bridge.izzati(summary)

# The same callback in the reactor thread (for a callback that never blocks).
reactor_bridge = Bridge()
reactor_bridge.izzati(summary, run_in="reactor")


# A file response: the file bench/izzati_bench.py made, streamed back.
def download(text, data):
    return file_return(os.environ["IZZATI_BENCH_FILE"], "application/octet-stream")


file_bridge = Bridge()
file_bridge.izzati(download, run_in="reactor")
