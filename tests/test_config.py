"""Settings: sizes, listener descriptions, defaults of SPEC section 9."""

import os

import pytest

from twistbridge import Bridge
from twistbridge.config import Settings, parse_size
from twistbridge.endpoints import listen_description


@pytest.mark.parametrize(
    "text, value",
    [
        ("1G", 1024**3),
        ("16M", 16 * 1024**2),
        ("10K", 10240),
        ("123", 123),
        (5, 5),
        ("2MiB", 2 * 1024**2),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1T", "-1", "1.5G"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_listen_description():
    assert listen_description(5020) == "tcp:5020:interface=127.0.0.1"
    assert listen_description("5020") == "tcp:5020:interface=127.0.0.1"
    assert listen_description("none") is None
    assert listen_description("NONE") is None
    assert listen_description("tcp:80:interface=0.0.0.0") == "tcp:80:interface=0.0.0.0"
    assert (
        listen_description("systemd:domain=INET:name=http")
        == "systemd:domain=INET:name=http"
    )


def test_defaults():
    s = Settings()
    assert (s.port, s.igor_port, s.bgpy_port) == (5020, 5678, 54321)
    assert s.max_upload_size == 1024**3
    assert s.max_request_size == s.max_message_size == 16 * 1024**2
    assert (s.header_timeout, s.idle_timeout, s.shutdown_timeout) == (10.0, 60.0, 10.0)
    assert s.threads == 10
    assert s.processes == (os.cpu_count() or 1)
    assert s.log_format == "text"


def test_bridge_keywords_are_setting_names():
    bridge = Bridge(
        max_upload_size="2M", threads=3, igor_allowed_origin="http://app.example"
    )
    assert bridge.settings.max_upload_size == 2 * 1024**2
    assert bridge.settings.threads == 3
    assert bridge.settings.igor_allowed_origin == ("http://app.example",)
    with pytest.raises(TypeError):
        Bridge(no_such_setting=1)


def test_token_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("BGPY_TOKEN", "from-env")
    assert Settings().token() == "from-env"
    assert Settings(bgpy_token="configured").token() == "configured"
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert (
        Settings(bgpy_token="configured", bgpy_token_file=str(path)).token()
        == "from-file"
    )
    monkeypatch.delenv("BGPY_TOKEN")
    assert Settings().token() is None


def test_isolation_defaults():
    s = Settings()
    assert s.allowed_host == ()
    assert s.max_upload_disk == 4 * 1024**3
    assert s.min_body_rate == 1024
    assert s.max_queued == 1000
    assert s.igor_takeover == "name"
    assert Settings(allowed_host="app.example", min_body_rate="2K").allowed_host == (
        "app.example",
    )
    assert Settings(min_body_rate="2K").min_body_rate == 2048
    with pytest.raises(ValueError, match="igor_takeover must be 'name' or 'token'"):
        Settings(igor_takeover="maybe")
