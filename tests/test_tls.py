"""
The bridge's own TLS listener (``--port ssl:...``), with the clients users
have: every one of them offers ALPN, which the handshake must answer.
"""

import datetime
import ipaddress
import json
import socket
import ssl

import pytest
import requests
import websocket

from twistbridge.testing import BridgeProcess

pytestmark = pytest.mark.one_worker

ORIGIN = "https://app.example.org"


def self_signed(folder):
    """A key and a self-signed certificate for 127.0.0.1, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = folder / "key.pem", folder / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    key, cert = self_signed(tmp_path_factory.mktemp("tls"))
    listen = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    args = ["--port", listen, "--igor-port", listen, "--bgpy-port", "none"]
    with BridgeProcess([*args, "--igor-allowed-origin", ORIGIN]) as server:
        server.certificate = str(cert)  # what the clients verify the bridge with
        yield server


def test_health_over_tls_with_requests(tls_server):
    base = f"https://127.0.0.1:{tls_server.port()}"
    response = requests.get(base + "/health", verify=tls_server.certificate, timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_a_client_offering_h2_first_gets_http_1_1(tls_server):
    """Browsers offer h2 then http/1.1: the bridge picks the one it speaks."""
    port = tls_server.port()
    context = ssl.create_default_context(cafile=tls_server.certificate)
    context.set_alpn_protocols(["h2", "http/1.1"])
    body = b'{"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(
                b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(payload) == {"jsonrpc": "2.0", "result": 5, "id": 1}


def test_an_upload_over_tls(tls_server):
    base = f"https://127.0.0.1:{tls_server.port()}"
    payload = bytes(range(256)) * 8192  # 2 MiB
    response = requests.post(
        base + "/",
        files={"file": ("data.bin", payload)},
        data={"name": "Ada"},
        verify=tls_server.certificate,
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "text": {"name": "Ada"},
        "files": [{"filename": "data.bin", "size": len(payload)}],
    }


@pytest.mark.parametrize("listener, path", [("http", "/ws"), ("igor", "/")])
def test_an_igor_stream_over_wss(tls_server, listener, path):
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{tls_server.port(listener)}{path}",
        origin=ORIGIN,
        sslopt={"ca_certs": tls_server.certificate},
        timeout=10,
    )
    try:
        ws.send('{"streamId": "s1", "action": "echo", "data": {"x": 1}}')
        assert [json.loads(ws.recv()), json.loads(ws.recv())] == [
            {"streamId": "s1", "data": {"x": 1}},
            {"streamId": "s1", "close": True},
        ]
    finally:
        ws.close()
