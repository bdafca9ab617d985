"""
The OpenRPC description of a JSON-RPC path (the answer to C{rpc.discover}).

Pure: it reads the methods' signatures, annotations and docstrings and
builds the OpenRPC 1.2 document as plain data.  Parameter names, defaults
and whether they are required come from the signature (the magic
C{_connection} parameter is left out: a client never sends it); JSON-Schema
types come from annotations (C{int}, C{float}, C{str}, C{bool}, C{None},
C{list}/C{List[X]}, C{tuple}, C{dict}/C{Dict[str, X]}, C{Optional[X]},
C{Union[...]}, C{Literal[...]}); anything else, or no annotation, is any
JSON value (C{{}}).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

#: A JSON Schema, or an OpenRPC object: JSON-encodable (tuples are arrays).
Document = Dict[str, object]

#: The method a client calls for the description.
DISCOVER = "rpc.discover"

#: The OpenRPC version of the documents built here.
OPENRPC_VERSION = "1.2.6"

#: The errors every method may answer (the handler's exception is -32000).
METHOD_ERRORS = [
    {"code": -32602, "message": "Invalid params"},
    {"code": -32000, "message": "Server error: the method raised an exception"},
]

_SIMPLE: Dict[object, Dict[str, str]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    bytes: {"type": "string"},
    type(None): {"type": "null"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
}


def schema_of(annotation: object) -> Document:
    """The JSON Schema of a Python annotation (C{{}}: any JSON value)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation is None:
        return {"type": "null"}
    if annotation in _SIMPLE:
        return dict(_SIMPLE[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or _is_union_type(origin):
        return {"oneOf": [schema_of(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset):
        schema: Document = {"type": "array"}
        if origin is tuple and args and args[-1] is not Ellipsis:
            schema["items"] = [schema_of(a) for a in args]
        elif args:
            schema["items"] = schema_of(args[0])
        return schema
    if origin is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = schema_of(args[1])
        return schema
    return {}


def _is_union_type(origin: object) -> bool:
    union_type = getattr(__import__("types"), "UnionType", None)
    return union_type is not None and origin is union_type


def _hints(func: Callable[..., object]) -> Dict[str, object]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: use the raw ones
        return dict(getattr(func, "__annotations__", {}) or {})


def _summary(doc: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """A docstring's first paragraph (summary) and the whole (description)."""
    if not doc:
        return None, None
    text = inspect.cleandoc(doc)
    return text.split("\n\n", 1)[0].replace("\n", " "), text


def describe_method(
    name: str, func: Callable[..., object], magic: Optional[str]
) -> Document:
    """The OpenRPC method object of C{func}, called as C{name}."""
    hints = _hints(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    params: List[Document] = []
    by_position = True
    if signature is not None:
        for parameter in signature.parameters.values():
            if parameter.name == magic:
                continue
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.kind is parameter.KEYWORD_ONLY:
                by_position = False
            schema = schema_of(hints.get(parameter.name, parameter.annotation))
            item: Document = {"name": parameter.name, "schema": schema}
            if parameter.default is parameter.empty:
                item["required"] = True
            elif _is_json(parameter.default):
                schema["default"] = parameter.default
            params.append(item)
    result_schema = schema_of(hints.get("return", inspect.Parameter.empty))
    summary, description = _summary(getattr(func, "__doc__", None))
    method: Document = {
        "name": name,
        "params": params,
        "result": {"name": "result", "schema": result_schema},
        "errors": [dict(e) for e in METHOD_ERRORS],
        "paramStructure": "either" if by_position else "by-name",
    }
    if summary:
        method["summary"] = summary
    if description:
        method["description"] = description
    return method


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def describe(
    path: str,
    methods: Iterable[Tuple[str, Callable[..., object], Optional[str]]],
    version: str,
    title: Optional[str] = None,
) -> Document:
    """
    The OpenRPC document of one path.

    @param methods: (name, function, magic parameter name) of each method,
        aliases included (each is a name a client may call).
    @param version: the API's version, shown as C{info.version}.
    """
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": title or f"JSON-RPC at {path}",
            "version": version,
        },
        "servers": [{"name": path, "url": path}],
        "methods": [
            describe_method(name, func, magic)
            for name, func, magic in sorted(methods, key=lambda m: m[0])
        ],
    }
