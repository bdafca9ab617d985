"""
Sphinx extension: read the project's epytext docstrings (Twisted's style:
C{code}, L{link}, I{italic}, C{@param}/C{@ivar}/C{@raise} fields) as
reStructuredText for autodoc.

Plain text is escaped so that characters meaning something in
reStructuredText (C{*args}, C{__init__}, backquotes) stay plain.  An indented
block after a blank line is a literal block, as in epytext.  C{L{name}} becomes
a cross-reference that is resolved against the documented objects (a short
name matches the one documented object of that name); a name found nowhere
(a private module, a Twisted class) is shown as code instead of a warning.
"""

from __future__ import annotations

import builtins
import re
import sys
from typing import Any, List, Optional, Tuple

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

_FIELD = re.compile(r"^@(\w+)(?:\s+([^:]+?))?\s*:\s?(.*)$")
_FIELD_NAMES = {
    "param": "param",
    "type": "type",
    "keyword": "keyword",
    "kwarg": "keyword",
    "ivar": "ivar",
    "cvar": "cvar",
    "var": "var",
    "return": "returns",
    "returns": "returns",
    "rtype": "rtype",
    "raise": "raises",
    "raises": "raises",
    "raises_": "raises",
    "note": "note",
    "see": "see",
    "since": "since",
    "warning": "warning",
}
_SPECIAL = set("\\*`|_")
_LIST = re.compile(r"^(?:[-*]|\d+[.)])\s+")
_MARKUP = re.compile(r"[CLIBUI]\{")
# characters after which (or before which) inline markup is recognised
_OPEN_OK = set(" \t\n'\"([{<-/:")
_CLOSE_OK = set(" \t\n'\")]}>-/:.,;!?\\")
_ESCAPES = {"lb": "{", "rb": "}", "lt": "<", "gt": ">"}


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def _matching(text: str, start: int) -> int:
    """Index of the brace closing the one at C{start}, or -1."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _plain(text: str) -> str:
    """Text of inline markup, with markup removed (for code and links)."""
    return convert_inline(text, plain=True)


def _literal(code: str) -> str:
    code = code.strip()
    if not code:
        return ""
    if "``" in code or code.startswith("`") or code.endswith("`"):
        return ":code:`" + code.replace("\\", "\\\\").replace("`", "\\`") + "`"
    return "``" + code + "``"


def _target_and_title(content: str) -> Tuple[str, Optional[str]]:
    match = re.match(r"^(.*?)\s*<([^<>]+)>\s*$", content, re.S)
    if match and match.group(1).strip():
        return match.group(2).strip(), _plain(match.group(1)).strip()
    return _plain(content).strip(), None


def convert_inline(text: str, plain: bool = False) -> str:
    """Epytext inline markup in one paragraph to reStructuredText."""
    out: List[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if text.startswith("``", i):
            # reStructuredText literal written directly: keep it
            end = text.find("``", i + 2)
            if end != -1:
                out.append(text[i + 2 : end] if plain else text[i : end + 2])
                i = end + 2
                continue
        if c in "CLIBUMXSE" and i + 1 < len(text) and text[i + 1] == "{":
            end = _matching(text, i + 1)
            if end != -1:
                content = text[i + 2 : end]
                piece = _markup(c, content, plain)
                if not plain and piece:
                    before = "".join(out)[-1:] or " "
                    after = text[end + 1 : end + 2] or " "
                    if before not in _OPEN_OK:
                        piece = "\\ " + piece
                    if after not in _CLOSE_OK:
                        piece = piece + "\\ "
                out.append(piece)
                i = end + 1
                continue
        out.append(c if plain else _escape(c))
        i += 1
    return "".join(out)


def _markup(kind: str, content: str, plain: bool) -> str:
    if kind == "E":
        return _ESCAPES.get(content.strip(), content)
    if plain:
        if kind == "L":
            target, title = _target_and_title(content)
            return title or target
        if kind == "U":
            target, title = _target_and_title(content)
            return title or target
        return _plain(content)
    if kind == "C":
        return _literal(_plain(content))
    if kind == "L":
        target, title = _target_and_title(content)
        target = target.strip().rstrip("()")
        if not target:
            return ""
        if title:
            return f":epy:`{_role_text(title)} <{target}>`"
        return f":epy:`{target}`"
    if kind == "U":
        target, title = _target_and_title(content)
        if title:
            return f"`{_role_text(title)} <{target}>`__"
        return f"`{target} <{target}>`__"
    inner = _plain(content).strip()
    if not inner:
        return ""
    if kind == "I":
        return "*" + _escape(inner) + "*"
    if kind == "B":
        return "**" + _escape(inner) + "**"
    return _escape(inner)


def _role_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("<", "\\<")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def convert(lines: List[str]) -> List[str]:
    """
    An epytext docstring (as lines, common indentation removed) to
    reStructuredText lines.
    """
    out: List[str] = []
    i = 0
    n = len(lines)
    in_field = False
    while i < n:
        line = lines[i].expandtabs()
        stripped = line.strip()
        if not stripped:
            out.append("")
            i += 1
            continue
        indent = _indent(line)
        previous_blank = i == 0 or not lines[i - 1].strip()
        # Literal block: indented after a blank line, or after a "::" paragraph.
        base = _paragraph_indent(lines, i)
        literal_by_colons = out and out[-1] == "" and _ends_with_colons(out)
        if stripped.startswith(">>>") and previous_blank:
            block, i = _take_block(lines, i, indent, stop_at_blank=True)
            out.extend(block)
            out.append("")
            continue
        if previous_blank and indent > base and not (in_field and indent > 0):
            block, i = _take_block(lines, i, indent)
            dedented = [b[indent:] if b.strip() else "" for b in block]
            if _LIST.match(stripped) or any(_MARKUP.search(b) for b in block):
                # prose indented: a nested list or a quoted paragraph
                if out and out[-1]:
                    out.append("")
                out.extend("    " + c if c else "" for c in convert(dedented))
            else:
                # code, a diagram, a table: a literal block
                if not literal_by_colons:
                    _add_colons(out)
                out.append("")
                out.extend("    " + d if d else "" for d in dedented)
            out.append("")
            continue
        field = _FIELD.match(stripped)
        if field:
            name = _FIELD_NAMES.get(field.group(1), field.group(1))
            arg = field.group(2)
            if not in_field and out and out[-1] != "":
                out.append("")
            in_field = True
            if name in ("note", "warning", "see", "since") and not arg:
                label = {"see": "seealso"}.get(name, name)
                head = f":{label}:"
            elif arg:
                arg_text = _plain(arg).strip()
                head = f":{name} {arg_text}:"
            else:
                head = f":{name}:"
            para, i = _take_paragraph(lines, i + 1)
            body = convert_inline(" ".join([field.group(3), *para]).strip())
            out.append(f"{' ' * indent}{head} {body}".rstrip())
            continue
        if previous_blank:
            in_field = False
        # an ordinary paragraph (or list item): join it, convert inline markup
        para, i = _take_paragraph(lines, i + 1)
        text = " ".join([stripped, *para])
        bullet = ""
        item = _LIST.match(text)
        if item:
            bullet, text = item.group(0), text[item.end() :]
            previous = out[-1] if out else ""
            sibling = _LIST.match(previous.lstrip()) and _indent(previous) == indent
            if previous and not sibling:
                out.append("")
        text = convert_inline(text)
        if not bullet:
            text = _protect_start(text)
        if in_field:
            out.append("    " + text)
        else:
            out.append(" " * indent + bullet + text)
    while out and not out[-1]:
        out.pop()
    # one blank line is as good as several
    return [line for k, line in enumerate(out) if line or k == 0 or out[k - 1]]


def _protect_start(text: str) -> str:
    """Keep a paragraph from being read as a list, a comment or a title."""
    if re.match(r"^(\d+|[a-zA-Z#])[.)]\s", text) or re.match(r"^[-+*]\s", text):
        return "\\" + text
    if text.startswith((".. ", "::", "|")):
        return "\\" + text
    return text


def _paragraph_indent(lines: List[str], i: int) -> int:
    """The indentation of the paragraph before the blank line(s) before C{i}."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0:
        return 0
    # go to the first line of that paragraph
    while j > 0 and lines[j - 1].strip():
        j -= 1
    return _indent(lines[j].expandtabs())


def _ends_with_colons(out: List[str]) -> bool:
    for line in reversed(out):
        if line.strip():
            return line.rstrip().endswith("::")
    return False


def _add_colons(out: List[str]) -> None:
    for k in range(len(out) - 1, -1, -1):
        if out[k].strip():
            if out[k].rstrip().endswith("::"):
                return
            if out[k].rstrip().endswith(":"):
                out[k] = out[k].rstrip() + ":"
            else:
                out.insert(k + 1, "")
                out.insert(k + 2, "::")
            return
    out.append("::")


def _take_block(
    lines: List[str], i: int, indent: int, stop_at_blank: bool = False
) -> Tuple[List[str], int]:
    block: List[str] = []
    while i < len(lines):
        line = lines[i].expandtabs()
        if line.strip() and _indent(line) < indent:
            break
        if not line.strip() and stop_at_blank:
            break
        block.append(line)
        i += 1
    while block and not block[-1].strip():
        block.pop()
        i -= 1
    return block, i


def _take_paragraph(lines: List[str], i: int) -> Tuple[List[str], int]:
    para: List[str] = []
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or _FIELD.match(stripped) or _LIST.match(stripped):
            break
        para.append(stripped)
        i += 1
    return para, i


def _process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: List[str]
) -> None:
    converted = convert(list(lines))
    lines[:] = converted


# cross-references ---------------------------------------------------------

_EXTERNAL = (
    "twisted.",
    "zope.",
    "autobahn.",
    "txaio.",
    "txjsonrpc.",
    "multipart.",
    "ampoule.",
    "izzati.",
    "bgpy.",
    "typing.",
    "collections.",
    "concurrent.",
    "threading.",
    "multiprocessing.",
    "queue.",
    "os.",
    "io.",
    "pathlib.",
    "socket.",
    "json.",
    "hmac.",
    "pickle.",
    "inspect.",
    "signal.",
    "subprocess.",
)


def _epy_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Any,
    options: Any = None,
    content: Any = None,
):
    from docutils.utils import unescape
    from sphinx.addnodes import pending_xref
    from sphinx.util.nodes import split_explicit_title

    has_title, title, target = split_explicit_title(unescape(text))
    env = inliner.document.settings.env
    node = pending_xref(
        rawtext,
        refdomain="py",
        reftype="obj",
        reftarget=target,
        refexplicit=has_title,
        epytext=True,
    )
    node["py:module"] = env.ref_context.get("py:module")
    node["py:class"] = env.ref_context.get("py:class")
    node += nodes.literal(rawtext, title, classes=["xref", "py", "py-obj"])
    return [node], []


def _candidates(env: Any, target: str) -> List[str]:
    objects = env.get_domain("py").objects
    short = target.split(".")[-1]
    found = [
        full
        for full, entry in objects.items()
        if (full == target or full.endswith("." + target))
        and not getattr(entry, "aliased", False)
    ]
    if not found and "." not in target:
        found = [full for full in objects if full.rsplit(".", 1)[-1] == short]
    return sorted(set(found))


def _missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target:
        return None
    found = _candidates(env, target)
    if len(found) == 1:
        domain = env.get_domain("py")
        builder = app.builder
        fromdocname = node.get("refdoc", "")
        ref = domain.resolve_xref(
            env, fromdocname, builder, "obj", found[0], node.deepcopy(), contnode
        )
        if ref is not None:
            return ref
    private = any(part.startswith("_") for part in target.split("."))
    if node.get("epytext") or private or _is_external(target):
        # not documented here (another library's name, a private module):
        # show it as code rather than warn
        return contnode
    return None


def _is_external(target: str) -> bool:
    if target.startswith(_EXTERNAL) or hasattr(builtins, target):
        return True
    top = target.split(".", 1)[0]
    return "." in target and top in getattr(sys, "stdlib_module_names", ())


def setup(app: Any) -> dict:
    """Register the docstring converter and the reference resolver."""
    app.add_role("epy", _epy_role)
    app.connect("autodoc-process-docstring", _process_docstring, priority=100)
    app.connect("missing-reference", _missing_reference, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
