"""The one endpoint-description builder: exact strings, and real sockets bound from them."""

import os

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.endpoints import serverFromString

from twistbridge.endpoints import endpoint_description, listen_description, quote


@pytest.mark.parametrize(
    "address, description",
    [
        (5020, "tcp:5020:interface=127.0.0.1"),
        ("5020", "tcp:5020:interface=127.0.0.1"),
        (("0.0.0.0", 8080), "tcp:8080:interface=0.0.0.0"),
        (("0.0.0.0", "8080"), "tcp:8080:interface=0.0.0.0"),
        (("", 1), "tcp:1:interface="),
        (("::1", 5678), r"tcp:5678:interface=\:\:1"),
        (("fe80::1%lo", "80"), r"tcp:80:interface=fe80\:\:1%lo"),
        ("/run/bridge.sock", "unix:/run/bridge.sock"),
        ("/tmp/a:b=c\\d.sock", r"unix:/tmp/a\:b\=c\\d.sock"),
        ("relative.sock", "unix:relative.sock"),
    ],
)
def test_descriptions(address, description):
    assert endpoint_description(address) == description


def test_options_are_quoted_in_order():
    assert (
        endpoint_description(
            ("::", 443), "ssl", privateKey="/k:1.pem", certKey="c=2.pem"
        )
        == r"ssl:443:interface=\:\::privateKey=/k\:1.pem:certKey=c\=2.pem"
    )


def test_quote_escapes_backslash_colon_and_equals():
    assert quote("a\\b:c=d") == r"a\\b\:c\=d"
    assert quote(5) == "5"


@pytest.mark.parametrize("port", ["http", 70000, -1, True, None, "5.0"])
def test_bad_ports(port):
    with pytest.raises(ValueError, match="port number"):
        endpoint_description(("127.0.0.1", port))


def test_listen_description_out_of_range():
    with pytest.raises(
        ValueError, match=r"a port number is 0-65535 \(0: any free port\)"
    ):
        listen_description("65536")


async def listen(description, echo):
    return await serverFromString(reactor, description).listen(echo.factory())


@pytest.mark.usefixtures("ipv6_loopback")
@pytest_twisted.ensureDeferred
async def test_an_ipv6_host_binds_that_address(echo):
    port = await listen(endpoint_description(("::1", "0")), echo)
    try:
        host = port.getHost()
        assert host.host == "::1"
        answer = await threads.deferToThread(echo.exchange, ("::1", host.port))
        assert answer == b"ping"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_unix_path_with_colon_equals_and_backslash(tmp_path, echo):
    path = str(tmp_path / "a:b=c\\d.sock")
    port = await listen(endpoint_description(path), echo)
    try:
        # The socket, and the lock file of Twisted's unix: endpoint beside it.
        assert sorted(os.listdir(tmp_path)) == ["a:b=c\\d.sock", "a:b=c\\d.sock.lock"]
        answer = await threads.deferToThread(echo.exchange, path)
        assert answer == b"ping"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_port_given_as_text_binds_loopback(echo):
    port = await listen(endpoint_description("0"), echo)
    try:
        host = port.getHost()
        assert host.host == "127.0.0.1"
        answer = await threads.deferToThread(echo.exchange, ("127.0.0.1", host.port))
        assert answer == b"ping"
    finally:
        await port.stopListening()


def test_every_compatibility_class_uses_the_builder():
    """The four compatibility classes describe an IPv6 host the same way."""
    from twistbridge.bgpy import Server
    from twistbridge.igor import IgorServer
    from twistbridge.izzati import Backend
    from twistbridge.jsonrpc._compat import _description

    expected = r"tcp:7001:interface=\:\:1"
    assert Server("::1", 7001).bridge().settings.bgpy_port == expected
    assert IgorServer({}, {"host": "::1", "port": 7001}).bridge.settings.igor_port == (
        expected
    )
    assert Backend().bridge("::1", "7001").settings.port == expected
    assert _description(("::1", 7001)) == expected
    assert _description("/tmp/a:b.sock") == r"unix:/tmp/a\:b.sock"
    assert _description(("::1", 7001), ssl=("k.pem", "c.pem")) == (
        r"ssl:7001:interface=\:\:1:privateKey=k.pem:certKey=c.pem"
    )
