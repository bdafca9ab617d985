"""
The nginx site of docs/deployment.rst, as written, in front of a real
``twistd bridge``: Debian's nginx accepts it (``nginx -t``) and serves
health, JSON-RPC, an upload and a WebSocket stream through it.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import requests
import urllib3
import websocket

from twistbridge.testing import BridgeProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK),
    reason="nginx is not installed (make test installs Debian's nginx as root)",
)


def documented_site() -> str:
    """The nginx code block of the deployment page, as a reader copies it."""
    text = (ROOT / "docs" / "deployment.rst").read_text("utf-8")
    block = text.split(".. code-block:: nginx\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def local_site(site: str, tmp: Path, tls_port: int, http_port: int) -> str:
    """
    The same site with this test's ports and a self-signed certificate (the
    C{nginx_conf} fixture wraps it as Debian's nginx.conf does).
    """
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=bridge.example.org",
            "-keyout",
            str(tmp / "bridge.key"),
            "-out",
            str(tmp / "bridge.pem"),
        ],
        check=True,
        capture_output=True,
    )
    replaced = (
        site.replace("127.0.0.1:5020", f"127.0.0.1:{http_port}")
        .replace("listen 443 ", f"listen 127.0.0.1:{tls_port} ")
        .replace("/etc/ssl/bridge.pem", str(tmp / "bridge.pem"))
        .replace("/etc/ssl/bridge.key", str(tmp / "bridge.key"))
    )
    assert replaced.count(str(tmp)) == 2 and f":{tls_port} " in replaced
    return replaced


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, nginx_conf):
    tmp = tmp_path_factory.mktemp("nginx")
    with BridgeProcess(
        [
            "--allowed-host",
            "bridge.example.org",
            "--igor-allowed-origin",
            "https://bridge.example.org",
        ]
    ) as server:
        tls_port = free_port()
        conf = tmp / "nginx.conf"
        site = local_site(documented_site(), tmp, tls_port, server.port())
        conf.write_text(nginx_conf(site, tmp))
        check = subprocess.run(
            [NGINX, "-t", "-p", str(tmp), "-c", str(conf)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        try:
            base = f"https://127.0.0.1:{tls_port}"

            def up():
                try:
                    return requests.get(
                        base + "/health",
                        verify=False,
                        timeout=2,
                        headers={"Host": "bridge.example.org"},
                    ).ok
                except requests.ConnectionError:
                    return False

            wait_for(up, 20, what="nginx in front of the bridge")
            yield base, tls_port, server
        finally:
            nginx.terminate()
            nginx.wait(10)


HOST = {"Host": "bridge.example.org"}

# nginx has a self-signed certificate here.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def test_health_through_nginx(proxied):
    base, _, _ = proxied
    response = requests.get(base + "/health", headers=HOST, verify=False, timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_json_rpc_through_nginx(proxied):
    base, _, _ = proxied
    body = {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
    response = requests.post(
        base + "/rpc", json=body, headers=HOST, verify=False, timeout=10
    )
    assert response.json() == {"jsonrpc": "2.0", "result": 5, "id": 1}


def test_upload_streams_through_nginx(proxied):
    base, _, _ = proxied
    payload = os.urandom(5 * 1024 * 1024)
    response = requests.post(
        base + "/",
        files={"file": ("big.bin", payload)},
        data={"name": "Ada"},
        headers=HOST,
        verify=False,
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "text": {"name": "Ada"},
        "files": [{"filename": "big.bin", "size": len(payload)}],
    }


def test_websocket_upgrade_through_nginx(proxied):
    _, tls_port, _ = proxied
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{tls_port}/ws",
        host="bridge.example.org",
        origin="https://bridge.example.org",
        sslopt={"cert_reqs": ssl.CERT_NONE},
        timeout=10,
    )
    try:
        ws.send('{"streamId": "s1", "action": "echo", "data": {"x": 1}}')
        answers = [json.loads(ws.recv()), json.loads(ws.recv())]
        assert answers == [
            {"streamId": "s1", "data": {"x": 1}},
            {"streamId": "s1", "close": True},
        ]
    finally:
        ws.close()
