"""
The one origin rule (L{twistbridge.origins}), shared by the Igor handshakes
and the playground: one table, each row a header value, an allow-list and
the answer.
"""

import pytest

from twistbridge import playground
from twistbridge.igor import _fileserver, _protocol
from twistbridge.origins import normalize_origin, origin_allowed, parse_origin

APP = ("https://app.example",)

TABLE = [
    # header absent: a program, not a browser
    (None, (), True),
    # null: sandboxed pages and files; any case
    ("null", (), True),
    ("NULL", (), True),
    ("Null", APP, True),
    # file pages (Electron)
    ("file://", (), True),
    ("file:///home/app/index.html", (), True),
    # loopback, http or https, any port, any case
    ("http://localhost", (), True),
    ("https://localhost:1", (), True),
    ("http://127.0.0.1:65535", (), True),
    ("http://[::1]", (), True),
    ("https://[::1]:8443", (), True),
    ("HTTP://LocalHost:3000", (), True),
    ("http://localhost:0", (), True),
    # not loopback, or not http(s)
    ("http://evil.example", (), False),
    ("http://localhost.evil.example", (), False),
    ("http://localhost:3000.evil.example", (), False),
    ("http://127.0.0.1.nip.io", (), False),
    ("http://[::2]", (), False),
    ("ws://localhost", (), False),
    ("chrome-extension://abc", (), False),
    # no origin at all: refused, whatever the allow-list
    ("", (), False),
    ("", ("*",), False),
    ("*", ("*",), False),
    ("http://user@localhost", (), False),
    ("http://evil.example@127.0.0.1", (), False),
    ("http://localhost/path", (), False),
    ("http://localhost/", (), False),  # a trailing slash is a path
    ("https://app.example/", APP, False),
    ("http://localhost?x", (), False),
    ("http://localhost:", (), False),
    ("http://localhost:notaport", (), False),
    ("http://localhost:99999", (), False),
    ("http://localhost:123456", (), False),
    ("http://localhost:-1", (), False),
    ("localhost", (), False),
    # the allow-list: whole origins, case-insensitive, default ports dropped
    ("https://app.example", APP, True),
    ("https://APP.example", APP, True),
    ("HTTPS://app.example", APP, True),
    ("https://app.example:443", APP, True),
    ("https://app.example", ("https://app.example:443",), True),
    ("https://app.example", ("HTTPS://App.Example/",), True),  # entry's slash
    ("http://app.example", APP, False),
    ("https://app.example:8443", APP, False),
    ("https://app.example:1", APP, False),
    ("https://sub.app.example", APP, False),
    ("http://other.example:8080", ("http://Other.Example:8080/",), True),
    ("http://other.example", ("http://Other.Example:8080/",), False),
    ("chrome-extension://abc", ("chrome-extension://abc",), True),
    ("https://app.example:99999", ("https://app.example:99999",), False),
    # "*": every origin (still not what is no origin)
    ("https://anything.example", ("*",), True),
    ("chrome-extension://abc", ("*",), True),
    ("https://anything.example/", ("*",), False),
    ("https://anything.example:99999", ("*",), False),
]


@pytest.mark.parametrize("origin, allowed, expected", TABLE)
def test_origin_rule(origin, allowed, expected):
    assert origin_allowed(origin, allowed) is expected


def test_igor_and_the_playground_use_the_one_rule():
    assert _protocol.origin_allowed is origin_allowed
    assert _fileserver.origin_allowed is origin_allowed
    assert playground.origin_allowed is origin_allowed


@pytest.mark.parametrize(
    "value, parsed, normalized",
    [
        (
            "HTTPS://App.Example:443",
            ("https", "app.example", None),
            "https://app.example",
        ),
        ("http://a.example:80", ("http", "a.example", None), "http://a.example"),
        ("http://a.example:8080", ("http", "a.example", 8080), "http://a.example:8080"),
        ("http://a.example:080", ("http", "a.example", None), "http://a.example"),
        ("https://[::1]:443", ("https", "[::1]", None), "https://[::1]"),
        ("http://a.example/", None, None),
        ("http://a.example:65536", None, None),
        ("null", None, None),
    ],
)
def test_parse_and_normalize(value, parsed, normalized):
    assert parse_origin(value) == parsed
    assert normalize_origin(value) == normalized
