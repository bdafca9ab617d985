"""The app bench/izzati_bench.py serves with `twistd bridge` (two callbacks, one per port)."""

from twistbridge import Bridge


def summary(text, data):
    return {"status": "ok", "text": text, "files": [[f.filename, f.size] for f in data]}


# The default: a plain def runs in the thread pool.
bridge = Bridge()
bridge.izzati(summary)

# The same callback in the reactor thread (for a callback that never blocks).
reactor_bridge = Bridge()
reactor_bridge.izzati(summary, run_in="reactor")
