"""100 concurrent batches of 20 calls, every response right."""

import concurrent.futures
import threading

import requests

from .conftest import ON_THE_SESSION_SERVERS

pytestmark = ON_THE_SESSION_SERVERS

local = threading.local()


def send_batch(url, n):
    session = getattr(local, "session", None)
    if session is None:
        session = local.session = requests.Session()
    batch = []
    for i in range(20):
        rid = f"{n}-{i}"
        if i % 3 == 0:
            batch.append(
                {
                    "jsonrpc": "2.0",
                    "method": "subtract",
                    "params": [n * 100, i],
                    "id": rid,
                }
            )
        elif i % 3 == 1:
            batch.append(
                {
                    "jsonrpc": "2.0",
                    "method": "async_double",
                    "params": [n + i],
                    "id": rid,
                }
            )
        else:
            batch.append(
                {"jsonrpc": "2.0", "method": "echo", "params": {"data": rid}, "id": rid}
            )
    response = session.post(url, json=batch, timeout=60)
    return n, response.status_code, response.json()


def expected(n, i):
    if i % 3 == 0:
        return n * 100 - i
    if i % 3 == 1:
        return (n + i) * 2
    return f"{n}-{i}"


def test_100_concurrent_batches_of_20(server):
    url = server.url("/rpc")
    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        results = list(pool.map(lambda n: send_batch(url, n), range(100)))
    assert len(results) == 100
    for n, status, body in results:
        assert status == 200
        assert len(body) == 20
        by_id = {r["id"]: r for r in body}
        assert set(by_id) == {f"{n}-{i}" for i in range(20)}
        for i in range(20):
            assert by_id[f"{n}-{i}"] == {
                "jsonrpc": "2.0",
                "result": expected(n, i),
                "id": f"{n}-{i}",
            }
