"""
Loading the methods of flaskJSONRPCServer's C{reload} entries: the objects
an entry gives, or names in a module imported again (C{importlib.reload}) or
in a script file executed afresh, as a module of its own each time.  Only the
loading lives here (no Twisted): swapping the methods in is
L{twistbridge.jsonrpc._controller.RpcController.reload}'s.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
from typing import Any, Dict, List

from twistbridge.jsonrpc._registry import RpcMethod, rpc_entries

_reload_ids = itertools.count(1)


def load_entry(o: Dict[str, Any], default_path: str, server: Any) -> List[RpcMethod]:
    """
    The methods one C{reload} entry names (see
    L{twistbridge.jsonrpc._controller.RpcController.reload}): its
    C{dispatcher} (a function, an instance, or the name of one in the module
    loaded from C{scriptPath} or imported as C{module}) at its C{path}
    (C{default_path} when it names none), after its C{overload} (a dict of
    attributes to set, or C{f(server, module, dispatcher)}) ran.

    @raise Exception: whatever loading the module or the entry raises.
    """
    if not isinstance(o, dict):
        raise TypeError(f"reload entries are dicts, not {type(o).__name__}")
    dispatcher = o.get("dispatcher")
    path = o.get("path") or default_path
    name = o.get("name") or o.get("dispatcherName")
    run_in = o.get("run_in")
    jsonp = o.get("fallback")
    module = None
    if isinstance(dispatcher, str):
        module = load_module(o)
        if not hasattr(module, dispatcher):
            raise AttributeError(f"{module.__name__} has no {dispatcher!r}")
        obj = getattr(module, dispatcher)
        if o.get("isInstance") and isinstance(obj, type):
            obj = obj()
        name = name or (None if o.get("isInstance") else dispatcher)
    elif dispatcher is not None:
        obj = dispatcher
    else:
        raise ValueError("a reload entry needs a 'dispatcher'")
    overloads = o.get("overload")
    for over in overloads if isinstance(overloads, (list, tuple)) else [overloads]:
        if not over:
            continue
        if isinstance(over, dict):
            target = module if module is not None else obj
            for k, v in over.items():
                setattr(target, k, v)
        elif callable(over):
            over(server, module, obj)
    if o.get("isInstance"):
        out: List[RpcMethod] = []
        for attr in dir(obj):
            member = getattr(obj, attr)
            if not attr.startswith("_") and callable(member):
                out.extend(rpc_entries(member, path, attr, run_in, jsonp))
        return out
    return rpc_entries(obj, path, name, run_in, jsonp)


def load_module(o: Dict[str, Any]) -> Any:
    """
    The module of a C{reload} entry: C{module} imported and reloaded, or a
    fresh module executed from the file C{scriptPath}.
    """
    if o.get("module"):
        module = importlib.import_module(o["module"])
        return importlib.reload(module)
    script = o.get("scriptPath")
    if not script:
        raise ValueError("reloading by name needs 'scriptPath' or 'module'")
    base = os.path.splitext(os.path.basename(script))[0]
    spec = importlib.util.spec_from_file_location(
        f"_twistbridge_reload_{base}_{next(_reload_ids)}", script
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
