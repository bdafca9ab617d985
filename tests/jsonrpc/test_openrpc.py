"""The OpenRPC description (rpc.discover), validated against the meta-schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Literal, Optional, Union

import pytest

from twistbridge.jsonrpc._openrpc import describe, describe_method, schema_of

from .conftest import ON_THE_SESSION_SERVERS

pytestmark = ON_THE_SESSION_SERVERS

SCHEMAS = Path(sys.prefix) / "share" / "openrpc"


@pytest.fixture(scope="module")
def meta_schema():
    """A validator of the OpenRPC meta-schema (fetched by make test)."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    if not (SCHEMAS / "openrpc.json").is_file():
        pytest.skip(
            "the OpenRPC meta-schema is not fetched (make test fetches it with npm)"
        )
    openrpc = json.loads((SCHEMAS / "openrpc.json").read_text())
    json_schema = json.loads((SCHEMAS / "json-schema.json").read_text())
    registry = referencing.Registry().with_resources(
        [
            (
                "https://meta.json-schema.tools",
                referencing.Resource.from_contents(
                    json_schema, default_specification=referencing.jsonschema.DRAFT7
                ),
            ),
            (
                "https://meta.json-schema.tools/",
                referencing.Resource.from_contents(
                    json_schema, default_specification=referencing.jsonschema.DRAFT7
                ),
            ),
        ]
    )
    return jsonschema.Draft7Validator(openrpc, registry=registry)


def add(a: int, b: int = 2) -> int:
    """Return a + b.

    Both are integers.
    """
    return a + b


def greet(name: str, *, polite: Optional[bool] = None, _connection=None) -> str:
    return name


def anything(x, *rest, **more):
    return x


def test_schema_of_annotations():
    assert schema_of(int) == {"type": "integer"}
    assert schema_of(List[str]) == {"type": "array", "items": {"type": "string"}}
    assert schema_of(Dict[str, float]) == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert schema_of(Optional[int]) == {
        "oneOf": [{"type": "integer"}, {"type": "null"}]
    }
    assert schema_of(Union[int, str]) == {
        "oneOf": [{"type": "integer"}, {"type": "string"}]
    }
    assert schema_of(Literal["a", "b"]) == {"enum": ["a", "b"]}
    assert schema_of(object) == {}


def test_method_from_signature_and_docstring():
    assert describe_method("add", add, "_connection") == {
        "name": "add",
        "params": [
            {"name": "a", "schema": {"type": "integer"}, "required": True},
            {"name": "b", "schema": {"type": "integer", "default": 2}},
        ],
        "result": {"name": "result", "schema": {"type": "integer"}},
        "errors": [
            {"code": -32602, "message": "Invalid params"},
            {"code": -32000, "message": "Server error: the method raised an exception"},
        ],
        "paramStructure": "either",
        "summary": "Return a + b.",
        "description": "Return a + b.\n\nBoth are integers.",
    }


def test_magic_parameter_and_keyword_only():
    method = describe_method("greet", greet, "_connection")
    assert [p["name"] for p in method["params"]] == ["name", "polite"]
    assert method["paramStructure"] == "by-name"
    assert "summary" not in method


def test_document_validates(meta_schema):
    document = describe(
        "/rpc",
        [
            ("add", add, "_connection"),
            ("greet", greet, "_connection"),
            ("anything", anything, None),
        ],
        "1.0",
    )
    assert [m["name"] for m in document["methods"]] == ["add", "anything", "greet"]
    errors = sorted(meta_schema.iter_errors(document), key=str)
    assert errors == []


def test_meta_schema_catches_a_broken_document(meta_schema):
    document = describe("/rpc", [("add", add, None)], "1.0")
    del document["info"]
    assert [e.message for e in meta_schema.iter_errors(document)] == [
        "'info' is a required property"
    ]


# -- rpc.discover on a real server ---------------------------------------------


def discover(url, headers=None):
    import requests

    body = {"jsonrpc": "2.0", "method": "rpc.discover", "id": 1}
    return requests.post(url, json=body, headers=headers or {}, timeout=10).json()


def test_rpc_discover_on_the_demo_validates_and_lists_callable_methods(
    demo_server, meta_schema
):
    import requests

    document = discover(demo_server.url("/rpc"))["result"]
    assert list(meta_schema.iter_errors(document)) == []
    names = [m["name"] for m in document["methods"]]
    assert names == ["add", "echo"]
    samples = {"integer": 2, "number": 2.5, "string": "x", "boolean": True}
    for method in document["methods"]:
        params = {
            p["name"]: samples.get(p["schema"].get("type"), 3) for p in method["params"]
        }
        answer = requests.post(
            demo_server.url("/rpc"),
            json={
                "jsonrpc": "2.0",
                "method": method["name"],
                "params": params,
                "id": 7,
            },
            timeout=10,
        ).json()
        assert "result" in answer, (method["name"], answer)
    listed = requests.post(
        demo_server.url("/rpc"),
        json={"jsonrpc": "2.0", "method": "system.listMethods", "id": 2},
        timeout=10,
    ).json()["result"]
    assert listed == ["add", "echo", "rpc.discover", "system.listMethods"]


def test_rpc_discover_is_behind_auth(bridge_server, meta_schema):
    refused = discover(bridge_server.url("/secure"))
    assert refused["error"]["code"] == -32001
    allowed = discover(bridge_server.url("/secure"), {"Authorization": "Bearer good"})
    document = allowed["result"]
    assert list(meta_schema.iter_errors(document)) == []
    assert [m["name"] for m in document["methods"]] == ["public", "secret"]
