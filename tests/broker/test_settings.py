"""The broker setting: its forms, its errors, and the default (no broker)."""

import subprocess

import pytest

from twistbridge import Bridge
from twistbridge.config import BrokerAddress, Settings, parse_broker
from twistbridge.igor._broker import LocalBroker
from twistbridge.testing import twistd_path

FORMS = "use redis://host:port/db, rediss://host:port/db or unix:///path/to.sock?db=N"


def test_the_forms():
    assert parse_broker("redis://10.0.0.5:6380/3") == BrokerAddress(
        False, "10.0.0.5", 6380, None, 3
    )
    assert parse_broker("redis://cache") == BrokerAddress(False, "cache", 6379, None, 0)
    assert parse_broker("rediss://u:p%40ss@cache:6390/1") == BrokerAddress(
        True, "cache", 6390, None, 1, "p@ss", "u"
    )
    assert parse_broker("unix:///run/redis/redis.sock?db=2") == BrokerAddress(
        False, None, 0, "/run/redis/redis.sock", 2
    )
    assert parse_broker("redis://[::1]:7000/0").describe() == "redis://[::1]:7000/0"
    assert parse_broker("rediss://u:secret@h/4").describe() == "rediss://h:6379/4"
    assert parse_broker("unix:///s.sock").describe() == "unix:///s.sock?db=0"


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://h:1", "broker: not a Redis URL: 'http://h:1' (" + FORMS + ")"),
        (
            "redis://h/x",
            "broker: 'redis://h/x' needs a host and a numeric db (" + FORMS + ")",
        ),
        (
            "redis:///0",
            "broker: 'redis:///0' needs a host and a numeric db (" + FORMS + ")",
        ),
        (
            "unix:///s.sock?db=two",
            "broker: 'unix:///s.sock?db=two' needs a socket path and a numeric db ("
            + FORMS
            + ")",
        ),
        (
            "redis://h:port/0",
            "broker: Port could not be cast to integer value as 'port' in "
            "'redis://h:port/0' (" + FORMS + ")",
        ),
    ],
)
def test_bad_urls_say_what_to_use(url, message):
    with pytest.raises(ValueError) as e:
        Settings(broker=url)
    assert str(e.value) == message


def test_the_default_is_no_broker():
    assert Settings().broker is None
    assert Settings(broker="none").broker is None
    bridge = Bridge()
    assert isinstance(bridge.runtime().igor_hub.broker, LocalBroker)
    assert bridge.runtime().igor_hub.broker.status() is None
    assert Bridge(broker="redis://h/1").settings.broker == "redis://h/1"


def test_the_option_refuses_a_bad_url():
    result = subprocess.run(
        [twistd_path(), "-n", "bridge", "--broker", "redis://h/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "broker: 'redis://h/x' needs a host and a numeric db" in (
        result.stdout + result.stderr
    )
