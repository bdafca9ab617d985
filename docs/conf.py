"""Sphinx configuration of the twistbridge documentation (``make docs``)."""

from __future__ import annotations

import logging
import os
import pydoc
import sys
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Document the source tree being built, not whatever copy is installed.
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(HERE, "_ext"))

project = "twistbridge"
author = "the twistbridge authors"
copyright = "the twistbridge authors, MIT License"  # noqa: A001
release = version = "0.1.0"

extensions = [
    # Runs pydoctor first: the API reference, and its inventory for the
    # references of these pages to API names.
    "pydoctor.sphinx_ext.build_apidocs",
    "sphinx.ext.intersphinx",
    "optional_toctree",
]

root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
templates_path: list = []
html_static_path: list = []
html_theme = "alabaster"
html_theme_options = {"page_width": "1080px", "sidebar_width": "230px"}
html_title = "twistbridge"
pygments_style = "sphinx"

# The inventories of Python's and Twisted's documentation, from Debian's
# python3-doc and twisted-doc packages (`make docs-deps`): there is no
# network when the documentation builds.  Links go to the published pages.
EXTERNAL_INVENTORIES = {
    "python": (
        "/usr/share/doc/python3/html/objects.inv",
        "https://docs.python.org/3/",
    ),
    "twisted": (
        "/usr/share/doc/twisted-doc/html/api/objects.inv",
        "https://docs.twisted.org/en/stable/api/",
    ),
}
missing_inventories = sorted(
    path for path, _ in EXTERNAL_INVENTORIES.values() if not os.path.isfile(path)
)

# Private modules the pages link into, beyond those that define public names.
LINKED_PRIVATE_MODULES = [
    "twistbridge.testing._*",
    "twistbridge.jsonrpc._compat",
    "twistbridge._signatures",
]


def _privacy_args() -> list:
    """
    pydoctor's C{--privacy} rules: the private modules are left out of the
    reference (they are most of the package, and most of pydoctor's time),
    except the modules that define a name a public module exports (pydoctor
    documents an object once, where it is defined) and those the pages link to.
    """
    import importlib
    import inspect
    import pkgutil

    import twistbridge

    homes = set()
    for info in pkgutil.walk_packages(twistbridge.__path__, "twistbridge."):
        if "._" in info.name:
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # (a module whose import says what to use instead)
        names = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")
        ]
        for name in names:
            obj = getattr(module, name, None)
            defined = getattr(obj, "__module__", None) or ""
            if (
                (inspect.isclass(obj) or inspect.isfunction(obj))
                and defined.startswith("twistbridge.")
                and "._" in defined
            ):
                homes.add(defined)
    hidden = ["twistbridge._*", "twistbridge.*._*", "twistbridge.*.*._*"]
    shown = sorted(homes) + LINKED_PRIVATE_MODULES
    return [f"--privacy=HIDDEN:{p}" for p in hidden] + [
        f"--privacy=PUBLIC:{p}" for p in shown
    ]


# The API reference: pydoctor reads the epytext docstrings of the package
# into reference/ of the HTML output.  Each line it prints is a Sphinx
# warning, so `sphinx-build -W` fails on a docstring pydoctor cannot parse
# or a link it cannot resolve.
pydoctor_args = [
    "--project-name=twistbridge",
    f"--project-version={release}",
    f"--project-base-dir={ROOT}",
    "--docformat=epytext",
    "--html-output={outdir}/reference",
    *(
        f"--intersphinx-file={path}::{url.rstrip('/')}"
        for path, url in EXTERNAL_INVENTORIES.values()
        if os.path.isfile(path)
    ),
    *_privacy_args(),
    os.path.join(ROOT, "twistbridge"),
]
pydoctor_url_path = "reference/"

intersphinx_mapping = {
    name: (url, path)
    for name, (path, url) in EXTERNAL_INVENTORIES.items()
    if os.path.isfile(path)
}

# Modules being reorganized as this is written: their docstrings still
# write literal blocks without epytext's "::".  pydoctor's complaints about
# them are logged, not errors, until they are fixed; take a module off once
# its docstrings parse (tests/test_docs.py checks each one still exists).
pydoctor_pending = [
    "twistbridge.service",
    "twistbridge.bgpy._service",
]

# Every reference must resolve (``sphinx-build -n``).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(zope|autobahn|txaio|txjsonrpc|multipart|ampoule)(\..*)?"),
    (r"py:.*", r"(izzati|bgpy|requests|websocket|jsonrpcclient)(\..*)?"),
]

# Pages written alongside this one: a :doc: link to one that is not there yet
# is plain text rather than an error (see _ext/optional_toctree.py).
optional_pages = [
    "handlers",
    "deployment",
    "playground",
    *(f"protocols/{name}" for name in ("izzati", "igor", "jsonrpc", "bgpy")),
    *(f"migrating/{name}" for name in ("izzati", "igor", "jsonrpc", "bgpy")),
]

# Python files under examples/ are included with literalinclude, not built.
source_suffix = {".rst": "restructuredtext"}


class _PendingFilter(logging.Filter):
    """pydoctor's lines about a module of L{pydoctor_pending} become info."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        pending = [name.replace(".", os.sep) for name in pydoctor_pending]
        about_pending = any(
            f"{os.sep}{path}.py:" in text
            or f"{os.sep}{path}{os.sep}__init__.py:" in text
            for path in pending
        ) or any(
            text.strip() == name or text.strip().startswith(name + ".")
            for name in pydoctor_pending
        )
        if about_pending or text.startswith("these ") and "syntax errors" in text:
            # (the count line: each object it lists is judged on its own)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.nonl = False  # (one line each, as the warnings were)
        return True


def _reexported(app: Any, env: Any, node: Any, contnode: Any) -> Optional[Any]:
    """
    A reference to a name under which a package re-exports an object
    (C{twistbridge.Bridge}) links to the object where pydoctor documents
    it (C{twistbridge.app.Bridge}).
    """
    from sphinx.ext import intersphinx

    if node.get("refdomain") != "py" or not node.get("reftarget", "").startswith(
        "twistbridge."
    ):
        return None
    target = pydoc.locate(node["reftarget"])
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not (module and qualname):
        return None
    # Where it is defined; or, defined in a private module, where pydoctor
    # moved it: a public module that re-exports it.
    candidates = [f"{module}.{qualname}"]
    if "._" in f".{module}" and "." not in qualname:
        candidates += [
            f"{name}.{qualname}"
            for name, public in list(sys.modules.items())
            if name.startswith("twistbridge.")
            and getattr(public, qualname, None) is target
        ]
    given = node["reftarget"]
    for home in candidates:
        if home == given:
            continue
        node["reftarget"] = home
        found = intersphinx.missing_reference(app, env, node, contnode)
        if found is not None:
            return found
    node["reftarget"] = given
    return None


def setup(app: Any) -> None:
    """Connect the two helpers above."""
    # The logger the pydoctor extension reports through.
    logging.getLogger("sphinx.pydoctor.sphinx_ext.build_apidocs").addFilter(
        _PendingFilter()
    )
    app.connect("missing-reference", _reexported, priority=900)
