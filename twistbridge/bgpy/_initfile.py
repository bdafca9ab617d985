"""
Loading bgpy's C{--init-file}: under the names clients use for its module,
with its relative imports working::

    real_name, names, tasks = load_init_file("bgpy_example/tasks.py")
    # "bgpy_example.tasks", ["bgpy_example.tasks", "tasks"], TaskSet(...)
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from typing import Any, List, Tuple

from twistbridge.bgpy._tasks import TaskSet

__all__ = ["CUSTOM_PACKAGE", "load_init_file"]


def _package_name(path: str) -> Tuple[str, str]:
    """
    C{(dotted name, root directory)} of a Python file: C{("pkg.tasks",
    "/src")} for C{/src/pkg/tasks.py} when C{/src/pkg/__init__.py} exists,
    C{("tasks", "/src/pkg")} for a file outside a package.
    """
    directory, filename = os.path.split(path)
    parts = [os.path.splitext(filename)[0]]
    root = directory
    while os.path.isfile(os.path.join(root, "__init__.py")):
        head, package = os.path.split(root)
        if not package.isidentifier() or head == root:
            break
        parts.insert(0, package)
        root = head
    return ".".join(parts), root


def _same_file(module: Any, path: str) -> bool:
    origin = getattr(module, "__file__", None)
    if not origin:
        return False
    return os.path.realpath(origin) == os.path.realpath(path)


CUSTOM_PACKAGE = "twistbridge.bgpy.custom"
"""The package an init file outside a package runs in when it imports
relatively (bgpy's own server runs them in C{bgpy.custom})."""


def _has_relative_imports(path: str) -> bool:
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    return any(
        isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)
    )


def _bare_is_free(stem: str, path: str) -> bool:
    """Whether C{stem} imports nothing else than the file at C{path}."""
    try:
        spec = importlib.util.find_spec(stem)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return True
    if not spec.origin:
        return False
    return os.path.realpath(spec.origin) == os.path.realpath(path)


def _load_module(path: str) -> Tuple[Any, List[str]]:
    """
    Load an init file: a file in a package under its package path (its
    package's root goes on C{sys.path}, so its relative and absolute imports
    work as in the package), any other file under its bare name.

    @return: the module and the names clients may use for it.
    """
    name, root = _package_name(path)
    stem = name.rpartition(".")[2]
    if "." in name:
        if root not in sys.path:
            sys.path.append(root)
        module = importlib.import_module(name)
        if not _same_file(module, path):
            raise ImportError(f"'{name}' is another file: {module.__file__}")
        names = [name]
        # A client started in the package's directory imports it bare.
        if stem not in sys.modules and _bare_is_free(stem, path):
            names.append(stem)
        return module, names
    if not stem.isidentifier() or stem in sys.modules:
        name = f"bgpy_init_{abs(hash(path))}"
    names = [name]
    if _has_relative_imports(path):
        # bgpy runs init files inside its package: "from ..server import
        # respond" finds this package's bgpy names (twistbridge.bgpy.server).
        name = f"{CUSTOM_PACKAGE}.{stem if stem.isidentifier() else names[0]}"
        names.append(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module, names


def load_init_file(path: str) -> Tuple[str, List[str], TaskSet]:
    """
    Load a tasks file (bgpy's C{--init-file}).

    A file inside a package (C{bgpy_example/tasks.py} beside
    C{bgpy_example/__init__.py}) is imported as C{bgpy_example.tasks}, as
    clients importing it name it (its relative imports work); clients
    started in its directory may name it C{tasks} too.  Any other file is
    loaded under its bare name (C{tasks.py} -> C{tasks}).

    @return: C{(the module's name, the names clients may use, TaskSet)}.
    @raise SystemExit: with a one-line reason when the file is unusable.
    """
    path = os.path.abspath(path)
    try:
        if not os.path.isfile(path):
            raise FileNotFoundError("no such file")
        module, names = _load_module(path)
        tasks = TaskSet(module.init_task, module.exec_task, module.exit_task)
    except Exception as e:
        raise SystemExit(
            f"bgpy: cannot load tasks from {path}: {type(e).__name__}: {e}"
        ) from None
    for func in (tasks.init_task, tasks.exec_task, tasks.exit_task):
        if not callable(func):
            raise SystemExit(f"bgpy: {path}: {func!r} is not callable")
    return module.__name__, names, tasks
