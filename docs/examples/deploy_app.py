"""
An app as it runs under the shipped systemd unit: uploads are saved in the
service's state directory (systemd sets STATE_DIRECTORY; /var/lib/twistbridge).
"""

import os

from twisted.logger import Logger

from twistbridge import Bridge

bridge = Bridge()

UPLOADS = os.path.join(os.environ.get("STATE_DIRECTORY", "."), "uploads")
os.makedirs(UPLOADS, exist_ok=True)
Logger().info("deploy_app: uploads are saved in {where}", where=UPLOADS)


@bridge.izzati
def upload(text, data):
    """Save every file under its sanitized name; answer with what was saved."""
    return {"saved": [os.path.basename(f.save(UPLOADS)) for f in data]}


@bridge.rpc_function
def add(a, b):
    """Return a + b."""
    return a + b
