"""
The shape of the package: layers that only point down, no import cycle, and
pure cores that load without Twisted.  The layers are the import-linter
contracts in pyproject.toml.
"""

import os
import subprocess
import sys

import grimp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_contracts_hold():
    """Every contract of pyproject.toml is kept (lint-imports exits 0)."""
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def cycles(graph):
    """Each direct import whose target also imports, maybe indirectly, its importer."""
    found = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if graph.chain_exists(importer=imported, imported=module):
                found.append(graph.find_shortest_chain(imported, module))
    return found


def build_graph():
    return grimp.build_graph("twistbridge", exclude_type_checking_imports=True)


def test_the_import_graph_has_no_cycle():
    """No module imports, even indirectly, a module that imports it."""
    assert cycles(build_graph()) == []


def test_a_cycle_would_be_found():
    """One import from a core back up to the app closes a cycle, and is found."""
    graph = build_graph()
    graph.add_import(importer="twistbridge.igor._core", imported="twistbridge.app")
    found = cycles(graph)
    assert (
        "twistbridge.app",
        "twistbridge.registry",
        "twistbridge.igor._core",
    ) in found


PURE = [
    "twistbridge.registry",
    "twistbridge.origins",
    "twistbridge.igor._core",
    "twistbridge.igor._parse",
    "twistbridge.jsonrpc._core",
    "twistbridge.jsonrpc._parse",
    "twistbridge.jsonrpc._dispatch",
    "twistbridge.jsonrpc._encode",
    "twistbridge.jsonrpc._httprules",
    "twistbridge.jsonrpc._state",
    "twistbridge.izzati._core",
    "twistbridge.bgpy._core",
    "twistbridge.bgpy._jsonlines",
    "twistbridge.bgpy._tasks",
    "twistbridge.bgpy._vet",
    "twistbridge.limits",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_load_without_twisted(module):
    """Importing a core (its packages' __init__ included) loads no Twisted."""
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('twisted', 'autobahn', 'zope', 'txaio')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_long_module_says_why_at_its_top():
    """A module past ~400 lines says in its docstring why it is long."""
    import ast
    import pathlib

    package = pathlib.Path(ROOT) / "twistbridge"
    unexplained = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text("utf-8")
        if text.count("\n") <= 420:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(
            w in doc
            for w in (
                "longer than most",
                "long because",
                "over 400 lines",
                "Over 400 lines",
            )
        ):
            unexplained.append(str(path.relative_to(ROOT)))
    assert unexplained == []
