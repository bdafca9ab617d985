"""
Sphinx extension: pages that may not exist yet.

Pages of this manual are written in parallel (a page per protocol, a
migration guide per original library, ...), so the build must pass
C{sphinx-build -W} whichever of them exist:

    - C{.. optional-toctree::} is a C{:glob:} toctree whose patterns may
      match nothing: such a pattern is left out instead of being a warning;
    - a C{:doc:} reference to a page named in the C{optional_pages} setting
      that does not exist is shown as plain text instead of being a warning
      (any other missing page is still an error).
"""

from __future__ import annotations

from typing import Any, List

from sphinx.directives.other import TocTree
from sphinx.util import docname_join
from sphinx.util.matching import patfilter


class OptionalTocTree(TocTree):
    """A globbing toctree that drops patterns matching no document."""

    def run(self) -> List[Any]:
        """Filter the patterns, then build the toctree as Sphinx does."""
        self.options["glob"] = True
        env = self.state.document.settings.env
        current = env.docname
        docs = set(env.found_docs) - {current}
        kept = []
        for entry in self.content:
            if not entry.strip():
                continue
            pattern = docname_join(current, entry.strip())
            if any(ch in entry for ch in "*?[") and not patfilter(docs, pattern):
                continue
            kept.append(entry)
        self.content = (
            type(self.content)(kept, items=[(current, i) for i in range(len(kept))])
            if kept
            else self.content[:0]
        )
        return super().run()


def _missing_page(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "std" or node.get("reftype") != "doc":
        return None
    target = docname_join(node.get("refdoc", ""), node.get("reftarget", ""))
    if target in app.config.optional_pages and target not in env.found_docs:
        return contnode
    return None


def setup(app: Any) -> dict:
    """Register the directive, the setting and the reference resolver."""
    app.add_directive("optional-toctree", OptionalTocTree)
    app.add_config_value("optional_pages", [], "env")
    app.connect("missing-reference", _missing_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
