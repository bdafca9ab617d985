"""
What the tests of the HTTP channel's lean path (twistbridge._lean) share:
the requests they send, the bridge and sites that answer them (with the
lean path and without), the answers they expect.
"""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twistbridge import Bridge
from twistbridge.web import BridgeSite

ONE = b'{"jsonrpc": "2.0", "method": "echo", "params": ["hello"], "id": 1}'
HELLO = b'{"jsonrpc":"2.0","result":"hello","id":1}'


def post(body=ONE, extra=b"", path=b"/rpc", version=b"HTTP/1.1", host=b"127.0.0.1"):
    return (
        b"POST %s %s\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"%sContent-Length: %d\r\n\r\n%s"
        % (path, version, host, extra, len(body), body)
    )


def call(method, params, id_=1):
    return b'{"jsonrpc": "2.0", "method": "%s", "params": %s, "id": %d}' % (
        method,
        params,
        id_,
    )


CLOSE = b"Connection: close\r\n"


class Pending:
    """The Deferreds of the C{later} method, fired by the test."""

    def __init__(self):
        self.calls = []
        self.cancelled = []
        self.arrived = Deferred()

    def later(self, data):
        d = Deferred(lambda d: self.cancelled.append(data))
        self.calls.append(d)
        if len(self.calls) == 1:
            # once the call is under way (the test's drain comes from the
            # reactor, as a real one does, never from inside a method)
            reactor.callLater(0, self.arrived.callback, None)
        return d


def make_bridge(**settings):
    bridge = Bridge(max_request_size=4096, **settings)
    pending = Pending()

    def echo(data):
        return data

    def techo(data):
        return data

    def conn(data, _connection=None):
        return data

    def boom(data):
        raise ValueError("no " + data)

    bridge.rpc_function(echo, run_in="reactor")
    bridge.rpc_function(boom, run_in="reactor")
    bridge.rpc_function(techo)  # the thread pool
    bridge.rpc_function(conn, run_in="reactor")
    bridge.rpc_function(pending.later, name="later", run_in="reactor")
    bridge.rpc_function(lambda data: succeed(data), name="fired", run_in="reactor")
    bridge.rpc_function(echo, path="/cors", run_in="reactor")
    bridge.rpc_path("/cors", cors=True)
    bridge.rpc_function(echo, path="/api/v2", run_in="reactor")
    return bridge, pending


def make_site(lean=True, **settings):
    bridge, pending = make_bridge(**settings)
    site = BridgeSite(bridge.resource(), bridge.settings)
    if not lean:
        site._lean_plain = False
    return site, pending


def blank(out):
    out = re.sub(rb"Date: [^\r]*", b"Date: -", out)
    return re.sub(rb"Server: TwistedWeb/[^\r]*", b"Server: TwistedWeb/-", out)


def ok(body, close=True, version=b"HTTP/1.1"):
    return (
        b"%s 200 OK\r\n%sServer: TwistedWeb/-\r\nDate: -\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (version, CLOSE if close else b"", len(body), body)
    )


def memory_site(**settings):
    clock = Clock()
    bridge, pending = make_bridge(**settings)
    site = BridgeSite(bridge.resource(), bridge.settings, reactor=clock)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, pending, channel, transport
