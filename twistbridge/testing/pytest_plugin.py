"""
The pytest plugin of twistbridge (registered through the C{pytest11} entry
point, so installing twistbridge is enough): the C{bridge_client} fixture::

    @pytest.fixture
    def bridge():
        return myapp.bridge

    def test_add(bridge_client):
        assert bridge_client.rpc("add", 1, 2) == 3

or, naming the app with a marker::

    @pytest.mark.bridge("myapp:bridge")
    def test_add(bridge_client): ...

C{bridge_client_factory} makes more clients (each closed at the end of the
test): C{bridge_client_factory(other_bridge, real_pools=True)}.  The
L{twistbridge.testing._client.BridgeTestClient} is imported only when a fixture is
used, so the plugin costs nothing to projects that do not use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional

import pytest

if TYPE_CHECKING:
    from twistbridge.testing._client import BridgeTestClient

__all__ = ["bridge_client", "bridge_client_factory", "load_bridge"]


def pytest_configure(config: Any) -> None:
    """Declare the C{bridge} marker."""
    config.addinivalue_line(
        "markers",
        "bridge(app, real_pools=False): the app the bridge_client fixture serves "
        '(a Bridge, or "module:attribute")',
    )


def load_bridge(app: Any) -> Any:
    """C{app} itself, or the object a C{"module:attribute"} string names."""
    if not isinstance(app, str):
        return app
    module, _, attribute = app.partition(":")
    if not attribute:
        raise ValueError(f'name the app as "module:attribute", not {app!r}')
    return getattr(importlib.import_module(module), attribute)


def _wanted(request: Any) -> tuple:
    marker = request.node.get_closest_marker("bridge")
    if marker is not None:
        if not marker.args:
            pytest.fail(
                '@pytest.mark.bridge needs the app: bridge("myapp:bridge")',
                pytrace=False,
            )
        return load_bridge(marker.args[0]), dict(marker.kwargs)
    if "bridge" in request.fixturenames or _has_fixture(request, "bridge"):
        return request.getfixturevalue("bridge"), {}
    pytest.fail(
        "bridge_client needs an app: define a `bridge` fixture returning it, "
        'or mark the test with @pytest.mark.bridge("myapp:bridge")',
        pytrace=False,
    )


def _has_fixture(request: Any, name: str) -> bool:
    try:
        request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return False
    return True


@pytest.fixture
def bridge_client_factory(request: Any) -> Iterator[Callable[..., BridgeTestClient]]:
    """
    Make L{BridgeTestClient}s: C{factory(bridge=None, real_pools=False)};
    without a bridge, the test's (its C{bridge} marker or fixture).  Every
    client made is closed after the test.
    """
    from twistbridge.testing._client import BridgeTestClient

    made: List[BridgeTestClient] = []

    def make(bridge: Optional[Any] = None, **kwargs: Any) -> BridgeTestClient:
        if bridge is None:
            bridge, marked = _wanted(request)
            kwargs = {**marked, **kwargs}
        client = BridgeTestClient(load_bridge(bridge), **kwargs)
        made.append(client)
        return client

    yield make
    for client in reversed(made):
        client.close()


@pytest.fixture
def bridge_client(
    bridge_client_factory: Callable[..., BridgeTestClient],
) -> BridgeTestClient:
    """A L{BridgeTestClient} over the test's app (its C{bridge} marker or fixture)."""
    return bridge_client_factory()
