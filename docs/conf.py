"""Sphinx configuration of the twistbridge documentation (``make docs``)."""

from __future__ import annotations

import os
import sys

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
    "sphinx.ext.autodoc",
    "epytext",
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

# Every reference must resolve (``sphinx-build -n``); there is no network
# when the documentation builds, so no intersphinx: Twisted's and the
# standard library's names are shown as code (see _ext/epytext.py).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(twisted|zope|autobahn|txaio|txjsonrpc|multipart|ampoule)(\..*)?"),
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

autodoc_typehints = "none"
autodoc_member_order = "bysource"
autoclass_content = "class"

# Python files under examples/ are included with literalinclude, not built.
source_suffix = {".rst": "restructuredtext"}
