"""
Every code block of README.md and docs/ runs, as written, in this test.

The blocks are found and run with Sybil.  What a block is decides how it is
checked:

- ``python``: executed, the blocks of a page one after the other in one
  module (a real file, so ``run_in="process"`` handlers pickle as in a
  user's program); when the page ends with a ``bridge``, that module is
  served by a real ``twistd -n bridge --app`` and must come up healthy.
- ``console``: each ``$ command`` is run by bash against the page's real
  server (``127.0.0.1:5020``, ``:5678`` and ``:54321`` stand for its
  ports), and its output must match what the block shows (``...`` matches
  anything).  A page whose server is its own module (``None`` in
  L{PAGE_SERVERS}) is served with the Python blocks above the block that
  needs the server (started afresh when blocks were added since).
- ``python`` under ``.. doc-check: client``: a program of its own, run with
  ``python`` against the page's server (ports as for ``console``); it must
  exit with status 0, and what it prints must match the comment lines after
  its ``# prints:`` line, if it has one.
- any other block names how it is checked in a comment right above it:
  ``.. doc-check: server-log`` (each line appears in the page's server
  output; ``/path/to/`` stands for any directory), ``.. doc-check: tested by tests/<file>`` (a test that exists runs
  it), ``.. doc-check: browser <JSON list>`` (JavaScript run in headless
  Chromium on a page of the server; what it passes to ``console.log``, as
  JSON, must be that list), ``.. doc-check: exchange`` (JSON lines on the
  page's bgpy port: each ``→`` line is sent, each ``←`` line must be the
  next one the server answers), or ``.. doc-check: not run: <reason>``.

``literalinclude`` blocks are files of docs/examples/, run by test_docs.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

sybil = pytest.importorskip("sybil", reason="the test extra brings sybil")

from sybil import Document  # noqa: E402
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer  # noqa: E402
from sybil.parsers.rest.lexers import DirectiveLexer  # noqa: E402

from twistbridge.testing import BridgeProcess, wait_for  # noqa: E402

from .conftest import environ_with  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
BIN = Path(sys.executable).parent

#: Pages whose console blocks and server logs need a running server, and
#: how it is started (app, working directory).
PAGE_SERVERS = {
    "README.md": ("twistbridge.demo:bridge", ROOT),
    "docs/quickstart.rst": ("quickstart_app:bridge", EXAMPLES),
    "docs/index.rst": ("twistbridge.demo:bridge", ROOT),
    "docs/playground.rst": ("twistbridge.demo:bridge", ROOT),
    "docs/operations.rst": ("twistbridge.demo:bridge", ROOT),
}

#: The options a page's server gets besides its app (``127.0.0.1:9102``
#: stands for the metrics listener's address).
PAGE_SERVER_ARGS = {"docs/operations.rst": ["--metrics-port", "0"]}

#: Pages whose server is the page's own module (its Python blocks).
PAGE_SERVERS.update(
    dict.fromkeys(
        [
            "docs/handlers.rst",
            "docs/migrating/bgpy.rst",
            "docs/migrating/izzati.rst",
            "docs/migrating/jsonrpc.rst",
            "docs/protocols/bgpy.rst",
            "docs/protocols/igor.rst",
            "docs/protocols/izzati.rst",
            "docs/protocols/jsonrpc.rst",
        ],
        (None, None),
    )
)

#: Pages whose Python blocks make a module of a name they show.
PAGE_MODULES = {"README.md": "myapp", "docs/protocols/bgpy.rst": "mytasks"}

_CHECK = re.compile(r"^\s*(?:\.\.|<!--)\s*doc-check:\s*(?P<what>.+?)\s*(?:-->)?\s*$")


def all_pages():
    """README.md and every page of the manual, as paths relative to the root."""
    return ["README.md"] + sorted(
        str(p.relative_to(ROOT)) for p in DOCS.rglob("*.rst") if "_build" not in p.parts
    )


def preceding_check(text: str, start: int) -> str | None:
    """The C{doc-check} comment on the last non-blank line before C{start}."""
    for line in reversed(text[:start].splitlines()):
        if line.strip():
            match = _CHECK.match(line)
            return match.group("what") if match else None
    return None


def blocks(path: str):
    """(language, check, source, line) for every code block of a page."""
    document = Document(read(path), str(ROOT / path))
    if path.endswith(".md"):
        lexer = FencedCodeBlockLexer(language=r".*")
        regions = list(lexer(document))
        key = "language"
    else:
        lexer = DirectiveLexer(directive=r"code-block|code|sourcecode")
        regions = list(lexer(document))
        key = "arguments"
    for region in regions:
        language = (region.lexemes.get(key) or "").strip()
        source = str(region.lexemes["source"])
        line = document.text.count("\n", 0, region.start) + 1
        yield (
            language,
            preceding_check(document.text, region.start),
            source,
            line,
            region,
        )


def read(path: str) -> str:
    return (ROOT / path).read_text("utf-8")


def literal_blocks(path: str):
    """Line numbers of reST ``::`` literal blocks, which say nothing of what they are."""
    if path.endswith(".md"):
        return []
    found = []
    for number, line in enumerate(read(path).splitlines(), 1):
        stripped = line.strip()
        if stripped.endswith("::") and not stripped.startswith(".."):
            found.append(number)
    return found


# ---------------------------------------------------------------------------
# Every block says what it is


@pytest.mark.parametrize("path", all_pages())
def test_every_block_says_how_it_is_checked(path):
    assert literal_blocks(path) == [], (
        f"{path}: use '.. code-block:: LANGUAGE' (console, python, text, ...) "
        "instead of '::' so the block can be checked"
    )
    unchecked = []
    for language, check, _, line, _ in blocks(path):
        if language in ("python", "console") and check is None:
            continue
        if check is None:
            unchecked.append(f"{path}:{line} ({language or 'no language'})")
        elif check.startswith("tested by "):
            assert (ROOT / check[len("tested by ") :].split()[0]).is_file(), check
        elif check.startswith("not run:"):
            assert len(check) > len("not run:") + 10, f"{path}:{line}: say why"
        elif check.startswith("browser "):
            assert language == "javascript", (
                f"{path}:{line}: browser checks are JavaScript"
            )
            json.loads(check[len("browser ") :])
        elif check in ("client", "exchange"):
            assert language == ("python" if check == "client" else "text"), (
                f"{path}:{line}: {check}"
            )
            assert path in PAGE_SERVERS, f"{path}:{line}: the page has no server"
        else:
            assert check == "server-log", f"{path}:{line}: unknown doc-check {check!r}"
    assert unchecked == [], "blocks with no '.. doc-check:' comment above them"


# ---------------------------------------------------------------------------
# Running them


def expected_matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("..."))
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


def substitute(text: str, server: BridgeProcess | None) -> str:
    if server is None:
        return text
    for name, default in (
        ("http", "127.0.0.1:5020"),
        ("igor", "127.0.0.1:5678"),
        ("bgpy", "127.0.0.1:54321"),
        ("metrics", "127.0.0.1:9102"),
    ):
        if name in server.addresses:
            text = text.replace(default, server.addresses[name])
    return text


def console_commands(source: str):
    """(command, expected output) pairs of a console block."""
    pairs = []
    command = None
    output: list = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            if command is not None:
                pairs.append((command, "\n".join(output)))
            command, output = line[2:], []
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
        elif command is not None:
            output.append(line)
        i += 1
    if command is not None:
        pairs.append((command, "\n".join(output)))
    return pairs


@pytest.fixture(scope="module")
def page_servers(tmp_path_factory):
    started = {}
    served = {}

    def get(path, module_file=None):
        if path not in PAGE_SERVERS:
            return None
        app, cwd = PAGE_SERVERS[path]
        paths = [str(EXAMPLES)]
        if app is None:
            module = sys.modules.get(module_file.stem) if module_file else None
            if module is None or "bridge" not in vars(module):
                return None  # no app above this block: nothing to serve yet
            app, cwd = f"{module_file.stem}:bridge", module_file.parent
            paths.insert(0, str(cwd))
            # Python blocks added since it started: serve them too.
            source = module_file.read_text("utf-8")
            if path in started and served.get(path) != source:
                started.pop(path).stop()
            served[path] = source
        if path not in started:
            env = environ_with(*paths)
            # The quickstart saves uploads in ./uploads, as its page says
            # (docs/examples/uploads/, which git ignores).
            env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
            args = PAGE_SERVER_ARGS.get(path, [])
            server = started[path] = BridgeProcess(
                ["--app", app, *args], env=env, cwd=str(cwd)
            ).start()
            if "--metrics-port" in args:
                # BridgeProcess waits for the protocols' listeners only.
                wait_for(
                    lambda: "metrics" in server.addresses,
                    10,
                    what="the metrics listener",
                )
        return started[path]

    yield get
    for server in started.values():
        server.stop()


@pytest.mark.parametrize("path", all_pages())
def test_blocks_run_as_written(path, page_servers, tmp_path, request):
    stem = re.sub(r"\W", "_", Path(path).stem)
    module_file = tmp_path / f"{PAGE_MODULES.get(path, 'docpage_' + stem)}.py"
    python_source = []
    for language, check, source, line, _ in blocks(path):
        where = f"{path}:{line}"
        if check == "server-log":
            server = page_servers(path, module_file)
            assert server is not None, f"{where}: the page has no server"
            for expected in source.strip().splitlines():
                shown = substitute(expected, server).replace("/path/to/", "...")
                pattern = ".*".join(re.escape(p) for p in shown.split("..."))
                assert re.search(pattern, server.output), (
                    f"{where}: {expected!r} not logged"
                )
        elif language == "console" and check is None:
            server = page_servers(path, module_file)
            for command, expected in console_commands(source):
                env = dict(
                    os.environ,
                    PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
                )
                result = subprocess.run(
                    ["bash", "-c", substitute(command, server)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    cwd=str(tmp_path),
                    env=env,
                )
                assert result.returncode == 0, f"{where}: {command}\n{result.stderr}"
                if expected.strip():
                    assert expected_matches(
                        substitute(expected, server), result.stdout
                    ), (
                        f"{where}: {command}\nexpected:\n{expected}\ngot:\n{result.stdout}"
                    )
        elif check is not None and check.startswith("browser "):
            run_in_browser(
                request,
                page_servers(path, module_file),
                source,
                json.loads(check[8:]),
                where,
            )
        elif check == "exchange":
            run_exchange(
                page_servers(path, module_file).addresses["bgpy"], source, where
            )
        elif language == "python" and check == "client":
            run_client(
                substitute(source, page_servers(path, module_file)), tmp_path, where
            )
        elif language == "python" and check is None:
            python_source.append(f"# {where}\n{source}")
            module_file.write_text("\n\n".join(python_source))
            run_module(module_file, where)
    if python_source and "bridge" in vars(run_module(module_file, path)):
        serve_page_module(module_file, path)


def run_client(source: str, cwd: Path, where: str):
    """Run a client block as a program; compare its output with its C{# prints:}."""
    lines = source.rstrip().splitlines()
    expected = None
    for i, line in enumerate(lines):
        if line.startswith("# prints:"):
            shown = [line[len("# prints:") :].strip()] + [
                rest[2:] if rest.startswith("# ") else rest.lstrip("#")
                for rest in lines[i + 1 :]
            ]
            expected = "\n".join(filter(None, shown))
            break
    program = cwd / "client.py"
    program.write_text(source)
    env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    result = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(cwd),
        env=env,
    )
    assert result.returncode == 0, f"{where}: the client failed:\n{result.stderr}"
    if expected is not None:
        assert expected_matches(expected, result.stdout), (
            f"{where}: the client printed:\n{result.stdout}\nnot:\n{expected}"
        )


def run_exchange(address: str, source: str, where: str):
    """Send the C{→} lines to C{address}; read and compare the C{←} lines."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        answers = sock.makefile("rb")
        for line in source.strip().splitlines():
            direction, text = line.strip().split(" ", 1)
            if direction == "→":
                sock.sendall(text.encode("utf-8") + b"\n")
            else:
                assert direction == "←", f"{where}: {line!r}"
                got = answers.readline().decode("utf-8")
                assert expected_matches(text, got), (
                    f"{where}: expected {text}, got {got!r}"
                )


def run_module(module_file: Path, where: str):
    name = module_file.stem
    sys.modules.pop(name, None)
    # As served: the page's directory, then docs/examples (tasks.py, ...).
    sys.path[:0] = [str(module_file.parent), str(EXAMPLES)]
    try:
        spec = importlib.util.spec_from_file_location(name, module_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(module_file.parent))
        sys.path.remove(str(EXAMPLES))


def serve_page_module(module_file: Path, where: str):
    from twistbridge import Bridge

    module = sys.modules[module_file.stem]
    if not isinstance(module.bridge, Bridge):
        return
    env = environ_with(module_file.parent, EXAMPLES)
    with BridgeProcess(
        ["--app", f"{module_file.stem}:bridge"], env=env, cwd=str(module_file.parent)
    ) as server:
        health = requests.get(server.url("/health"), timeout=10)
        assert health.json()["status"] == "ok", where


def test_make_run_is_the_command_the_readme_shows():
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "run",
            "PORT=5030",
            "ARGS=--igor-port 5679 --bgpy-port 54322",
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        ".venv/bin/twistd -n bridge --port 5030 --igor-port 5679 --bgpy-port 54322"
    )


def run_in_browser(request, server, source, expected, where):
    """Run C{source} in Chromium on the server's origin; compare its console.log."""
    browser = request.getfixturevalue("browser")
    browser.get(server.url("/health"))
    script = (
        "window.__logged = [];"
        "console.log = (v) => window.__logged.push(JSON.stringify(v));\n"
        + substitute(source, server)
    )
    browser.execute_script(script)

    def logged():
        got = [json.loads(v) for v in browser.execute_script("return window.__logged")]
        return got if len(got) >= len(expected) else None

    assert wait_for(logged, 10, what=f"{where}: console.log output") == expected, where
