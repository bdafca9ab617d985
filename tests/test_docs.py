"""
The documentation: it builds with warnings as errors, it documents every
public name, the command lines and settings it shows are the real ones, and
the example programs it includes run and give the answers the pages show.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import posixpath
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from twistbridge.config import SIZE_SETTINGS, Settings, parse_size
from twistbridge.testing import BridgeProcess, wait_for

from .conftest import environ_with

# Under pytest-xdist, these tests run in one worker (the other workers go on
# with theirs meanwhile), and the manual is built once a run (built_docs).
pytestmark = [pytest.mark.xdist_group("docs"), pytest.mark.long]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

API_MODULES = [
    "twistbridge",
    "twistbridge.app",
    "twistbridge.config",
    "twistbridge.offload",
    "twistbridge.errors",
    "twistbridge.service",
    "twistbridge.web",
    "twistbridge.channel",
    "twistbridge.hosts",
    "twistbridge.limits",
    "twistbridge.tap",
    "twistbridge.testing",
    "twistbridge.izzati",
    "twistbridge.igor",
    "twistbridge.jsonrpc",
    "twistbridge.bgpy",
]


def load_example(name: str):
    """Import docs/examples/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def examples_env(**extra: str) -> dict:
    return environ_with(EXAMPLES, **extra)


def rst_files():
    return sorted(DOCS.rglob("*.rst"))


# ---------------------------------------------------------------------------
# The build


def docs_conf() -> dict:
    """The settings of docs/conf.py."""
    import runpy

    saved = list(sys.path)
    try:
        return runpy.run_path(str(DOCS / "conf.py"))
    finally:
        sys.path[:] = saved


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    """
    The HTML documentation, built as `make docs` does (-W -n), once a run:
    under pytest-xdist the module's tests run in one worker (its
    C{xdist_group}).
    """
    pytest.importorskip(
        "sphinx", reason="the docs extra is not installed (pip install .[docs])"
    )
    pytest.importorskip(
        "pydoctor", reason="the docs extra is not installed (pip install .[docs])"
    )
    missing = docs_conf()["missing_inventories"]
    if missing:
        pytest.skip(
            f"no {', '.join(missing)}: run `make docs-deps` (Debian's python3-doc "
            "and twisted-doc) to link Python's and Twisted's names"
        )

    def build(out):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sphinx",
                "-W",
                "-n",
                "-q",
                "-b",
                "html",
                str(DOCS),
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"sphinx-build -W -n failed:\n{result.stderr}"

    out = tmp_path_factory.mktemp("html")
    build(out)
    return out


def test_sphinx_build_has_no_warnings(built_docs):
    assert (built_docs / "index.html").is_file()
    for page in ("quickstart", "embedding", "security", "design", "api"):
        assert (built_docs / f"{page}.html").is_file(), page


def test_the_api_reference_is_pydoctors_and_the_api_page_links_to_it(built_docs):
    index = (built_docs / "reference" / "index.html").read_text("utf-8")
    assert '<meta name="generator" content="pydoctor ' in index
    assert 'href="twistbridge.app.html"' in index
    api = (built_docs / "api.html").read_text("utf-8")
    assert 'href="reference/index.html"' in api


def reference_names(built_docs) -> set:
    """Every name in the inventory pydoctor wrote for the API reference."""
    from sphinx.util.inventory import InventoryFile

    with open(built_docs / "reference" / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "reference/", posixpath.join)
    data = getattr(inventory, "data", inventory)  # (Sphinx 8.2+: an object)
    return {name for entries in data.values() for name in entries}


def public_names(module_name: str):
    """
    Each public name a reader of the API reference must find, with the
    dotted names it may be documented under: its own, where it is defined
    (pydoctor documents an object once, in its defining module), and each
    public module that re-exports it (pydoctor moves there what a private
    module defines).
    """
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        names = list(module.__all__)
    else:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and obj.__module__ == module_name
        ]
    for name in names:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants: documented where they have a doc comment
        homes = [f"{obj.__module__}.{obj.__qualname__}"] + [
            f"{m}.{name}"
            for m, public in list(sys.modules.items())
            if m.startswith("twistbridge")
            and "._" not in f".{m}"
            and getattr(public, name, None) is obj
        ]
        yield f"{module_name}.{name}", homes
        if getattr(obj, "__name__", name) != name:
            continue  # an alias: its members are the original's
        if inspect.isclass(obj) and obj.__module__.startswith("twistbridge"):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if inspect.isfunction(member) or isinstance(
                    member, (property, classmethod, staticmethod)
                ):
                    yield (
                        f"{module_name}.{name}.{attr}",
                        [f"{home}.{attr}" for home in homes],
                    )


def test_every_optional_page_exists():
    """conf.py lets a link to these be plain text while one is missing:
    once all are written, a renamed or deleted page must fail here."""
    conf = docs_conf()
    missing = [p for p in conf["optional_pages"] if not (DOCS / f"{p}.rst").is_file()]
    assert missing == []


def test_every_module_whose_docstrings_are_pending_exists():
    """conf.py lets pydoctor's complaints about these modules pass: a module
    renamed or split must leave the list (its new modules are checked)."""
    for name in docs_conf()["pydoctor_pending"]:
        assert importlib.util.find_spec(name) is not None, name


#: Modules whose import is a deliberate ImportError saying what to use instead.
REFUSED_MODULES = {"twistbridge.jsonrpc.execBackend"}


def test_every_public_name_is_in_the_api_reference(built_docs):
    import pkgutil

    import twistbridge

    documented = reference_names(built_docs)
    for info in pkgutil.walk_packages(twistbridge.__path__, "twistbridge."):
        if "._" not in info.name and info.name not in REFUSED_MODULES:
            importlib.import_module(
                info.name
            )  # every public module, for its re-exports
    missing = [
        name
        for m in API_MODULES
        for name, homes in public_names(m)
        if not documented.intersection(homes)
    ]
    assert missing == []


def test_the_epytext_docstrings_become_markup(built_docs):
    reference = built_docs / "reference"
    page = (reference / "twistbridge.config.Settings.html").read_text("utf-8")
    # C{...} is code, L{...} a link (to Python's documentation for None),
    # @ivar an attribute of the class.
    assert '<tt class="rst-docutils rst-literal">BGPY_TOKEN</tt>' in page
    assert 'href="https://docs.python.org/3/library/constants.html#None"' in page
    assert '<a name="twistbridge.config.Settings.igor_takeover">' in page
    pending = tuple(docs_conf()["pydoctor_pending"])
    checked = 0
    for path in sorted(reference.glob("twistbridge.*.html")):
        name = path.name[: -len(".html")]
        if name.startswith(pending) or name in (
            "twistbridge.bgpy",
            "twistbridge.jsonrpc",
        ):
            continue  # (a package page shows its pending modules' summaries)
        text = path.read_text("utf-8")
        for raw in ("C{", "L{", "I{", "@ivar", "@param", "@raise", "@return"):
            assert raw not in text, (path.name, raw)
        checked += 1
    assert checked > 100


def test_the_pages_link_api_names_to_the_reference(built_docs):
    """:class:`~twistbridge.Bridge` links to the class where pydoctor
    documents it; Python's and Twisted's names link to their documentation."""
    embedding = (built_docs / "embedding.html").read_text("utf-8")
    assert 'href="reference/twistbridge.app.Bridge.html"' in embedding
    assert 'href="reference/twistbridge.app.Bridge.html#service"' in embedding
    assert (
        'href="https://docs.twisted.org/en/stable/api/'
        'twisted.application.service.IService.html"'
    ) in embedding
    api = (built_docs / "api.html").read_text("utf-8")
    # file_return is documented where the package offers it: twistbridge
    assert 'href="reference/index.html#file_return"' in api


def test_every_example_is_included_by_a_page():
    text = "\n".join(p.read_text("utf-8") for p in rst_files())
    for example in sorted(EXAMPLES.glob("*.py")):
        assert f"examples/{example.name}" in text, example.name


# ---------------------------------------------------------------------------
# What the pages say matches the code


def long_options(options) -> set:
    names = {o.rstrip("=") for o in options.longOpt}
    return {"--" + n for n in names}


def test_twistd_command_lines_in_the_docs_use_real_options():
    from twisted.scripts.twistd import ServerOptions

    from twistbridge.tap import Options

    twistd_options = long_options(ServerOptions())
    bridge_options = long_options(Options())
    checked = 0
    for page in [*rst_files(), *EXAMPLES.glob("*.py")]:
        for number, line in enumerate(page.read_text("utf-8").splitlines(), 1):
            match = re.search(r"\btwistd\b(.*?)\bbridge\b(.*)", line)
            if not match:
                continue
            before, after = match.group(1), match.group(2)
            for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", before):
                assert option in twistd_options, (
                    f"{page.name}:{number}: twistd {option}"
                )
            for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", after):
                assert option in bridge_options, (
                    f"{page.name}:{number}: bridge {option}"
                )
            checked += 1
    assert checked >= 5


def test_security_page_states_the_real_defaults():
    """Every row of the defences table: a real option with its real default."""
    from twistbridge.tap import Options

    text = (DOCS / "security.rst").read_text("utf-8")
    rows = re.findall(r"^\s+\* - ``(--[\w-]+)``\n\s+- (.+)$", text, re.M)
    defaults = Settings()
    bridge_options = long_options(Options())
    seen = set()
    for option, default in rows:
        assert option in bridge_options, option
        name = option[2:].replace("-", "_")
        value = getattr(defaults, name)
        shown = default.replace("``", "").strip()
        if name in SIZE_SETTINGS:
            assert parse_size(shown.split()[0]) == value, option
        elif isinstance(value, str):
            assert shown.split()[0] == value, option
        elif isinstance(value, tuple):
            assert shown.startswith("none") and value == (), option
        elif value is None:
            assert shown.startswith("none"), option
        else:
            assert float(shown.split()[0]) == float(value), option
        seen.add(name)
    assert {
        "max_upload_size",
        "max_request_size",
        "max_message_size",
        "header_timeout",
        "idle_timeout",
        "message_timeout",
        "max_connections",
        "max_connections_per_client",
        "igor_allowed_origin",
        "bgpy_allow_module",
        "bgpy_token_file",
        "allowed_host",
        "max_upload_disk",
        "min_body_rate",
    } <= seen


# ---------------------------------------------------------------------------
# The quickstart app and its clients, against `twistd -n bridge --app`


@pytest.fixture
def quickstart_process(tmp_path):
    """The quickstart app, run from docs/examples as the page says."""
    env = examples_env(QUICKSTART_UPLOADS=str(tmp_path))
    server = BridgeProcess(
        ["--app", "quickstart_app:bridge"], env=env, cwd=str(EXAMPLES)
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    uploads = tmp_path_factory.mktemp("uploads")
    env = examples_env(QUICKSTART_UPLOADS=str(uploads))
    with BridgeProcess(
        ["--app", "quickstart_app:bridge"], env=env, cwd=str(EXAMPLES)
    ) as server:
        server.uploads = uploads
        yield server


def test_quickstart_serves_health(quickstart):
    response = requests.get(quickstart.url("/health"), timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert set(response.json()["services"]) == {"http", "igor", "bgpy"}


def test_quickstart_izzati_client(quickstart):
    answer = load_example("quickstart_client_izzati").main(quickstart.url("/"))
    assert answer == {
        "status": "yes",
        "text": {"name": "Ada"},
        "files": [{"filename": "hello.txt", "size": 19}],
    }
    assert (quickstart.uploads / "hello.txt").read_bytes() == b"hello, twistbridge\n"


def test_quickstart_igor_client_on_the_http_port(quickstart):
    client = load_example("quickstart_client_igor")
    assert client.main(quickstart.url("/ws", scheme="ws")) == (["Hello Ada"], [3, 2, 1])


def test_quickstart_igor_client_on_the_igor_port(quickstart):
    client = load_example("quickstart_client_igor")
    url = quickstart.url("/", scheme="ws", name="igor")
    assert client.main(url) == (["Hello Ada"], [3, 2, 1])


def test_quickstart_jsonrpc_client(quickstart):
    from jsonrpcclient import Error, Ok

    ok, error = load_example("quickstart_client_jsonrpc").main(quickstart.url("/rpc"))
    assert isinstance(ok, Ok) and ok.result == 5
    assert isinstance(error, Error)
    assert (error.code, error.message) == (-32000, "division by zero")
    assert error.data == {"type": "ZeroDivisionError"}


def test_quickstart_bgpy_clients_in_the_order_of_the_page(quickstart_process):
    """bgpy's client, then the JSON-lines client twice: each carries on."""
    host, port = quickstart_process.addresses["bgpy"].rsplit(":", 1)
    state = load_example("quickstart_client_bgpy").main(host, port)
    assert state == {"request_count": 3, "value": 910, "await_response": False}
    again = load_example("quickstart_client_bgpy").main(host, port)
    assert again == {"request_count": 6, "value": 820, "await_response": False}
    json_lines = load_example("quickstart_client_bgpy_json")
    ack, state, final = json_lines.main(host, port)
    assert ack == {"type": "OK", "args": {"message": "Received 'EXIT'"}}
    assert state == {"type": "OK", "args": {"request_count": 8, "value": 830}}
    assert final == {
        "type": "OK",
        "args": {"request_count": 9, "value": 830, "status": "Exited."},
    }
    # After that EXIT, its INIT starts a fresh state: what the page shows.
    ack, state, final = json_lines.main(host, port)
    assert state == {"type": "OK", "args": {"request_count": 2, "value": 1010}}
    assert final == {
        "type": "OK",
        "args": {"request_count": 3, "value": 1010, "status": "Exited."},
    }


def test_quickstart_logs_where_uploads_go(quickstart):
    assert f"quickstart: uploads are saved in {quickstart.uploads}" in quickstart.output


# ---------------------------------------------------------------------------
# The embedding examples, as their own processes


@pytest.fixture(scope="module")
def embedded_site(module_program):
    site = module_program(
        [sys.executable, EXAMPLES / "embed_resource.py", "0"], env=examples_env()
    )
    return "http://" + site.address(r"site listening on (\S+)")


def test_embedded_site_keeps_its_own_pages(embedded_site):
    response = requests.get(embedded_site + "/about", timeout=10)
    assert (response.status_code, response.text) == (200, "About this site.")
    assert b"An existing site" in requests.get(embedded_site + "/", timeout=10).content


def test_embedded_site_serves_the_bridge_health(embedded_site):
    response = requests.get(embedded_site + "/bridge/health", timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    # What it serves: the bridge through the site's own port, under /bridge/.
    assert response.json()["services"] == {
        "http": {
            "up": True,
            "address": embedded_site[len("http://") :],
            "mounted": "/bridge/",
        }
    }


def test_embedded_site_serves_json_rpc(embedded_site):
    body = {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
    response = requests.post(embedded_site + "/bridge/rpc", json=body, timeout=10)
    assert response.json() == {"jsonrpc": "2.0", "result": 5, "id": 1}


def test_embedded_site_serves_igor(embedded_site):
    from websocket import create_connection

    ws = create_connection(
        embedded_site.replace("http", "ws") + "/bridge/ws", timeout=10
    )
    try:
        ws.send('{"streamId": "a", "action": "echo", "data": [1, 2]}')
        assert json.loads(ws.recv()) == {"streamId": "a", "data": [1, 2]}
        assert json.loads(ws.recv()) == {"streamId": "a", "close": True}
    finally:
        ws.close()


def test_embedded_site_serves_izzati(embedded_site):
    from izzati import Frontend

    answer = Frontend(embedded_site + "/bridge/").send({"name": "Ada"})
    assert answer == {"status": "yes", "text": {"name": "Ada"}, "files": []}


def test_embedded_site_refuses_an_oversized_upload_before_reading_it(embedded_site):
    host, port = embedded_site[len("http://") :].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /bridge/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 20971520\r\n\r\n"
        )
        answer = sock.makefile("rb").readline()
    assert answer == b"HTTP/1.1 413 Request Entity Too Large\r\n"


def twistd() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    return str(candidate) if candidate.exists() else "twistd"


def embedded_service(program, tmp_path, env):
    """The embed_service.py example run by `twistd -n -y`."""
    return program(
        [
            twistd(),
            "-n",
            "--pidfile",
            str(tmp_path / "pid"),
            "-y",
            str(EXAMPLES / "embed_service.py"),
        ],
        env=env,
        cwd=str(tmp_path),
    )


def test_embedded_service_runs_beside_the_application_services(program, tmp_path):
    env = examples_env(
        EMBED_HTTP_PORT="0", EMBED_IGOR_PORT="none", EMBED_BGPY_PORT="none"
    )
    service = embedded_service(program, tmp_path, env)
    try:
        address = service.address(r"http listening on (\S+)")
        health = requests.get(f"http://{address}/health", timeout=10)
        assert health.status_code == 200
        assert set(health.json()["services"]) == {"http"}
        # the application's own service runs too: its heartbeat is logged
        service.address(r"(heartbeat 1)\b", timeout=10)
    finally:
        status = service.stop()
    assert status in (0, -signal.SIGTERM), service.output


def test_embedded_service_answers_json_rpc(program, tmp_path):
    env = examples_env(EMBED_HTTP_PORT="0")
    service = embedded_service(program, tmp_path, env)
    address = service.address(r"http listening on (\S+)")
    service.address(r"(heartbeat 1)\b", timeout=10)
    body = {"jsonrpc": "2.0", "method": "heartbeats", "id": 7}
    answer = requests.post(f"http://{address}/rpc", json=body, timeout=10).json()
    assert answer["id"] == 7 and answer["result"] >= 1


def test_embedded_site_name_without_slash(embedded_site):
    """POST /bridge is the upload endpoint, as POST /bridge/ is; GET redirects."""
    response = requests.post(
        embedded_site + "/bridge",
        files={"file": ("a.txt", b"hi")},
        data={"k": "v"},
        timeout=10,
    )
    assert (response.status_code, response.json()) == (
        200,
        {"status": "yes", "text": {"k": "v"}, "files": ["a.txt"]},
    )
    response = requests.get(
        embedded_site + "/bridge", allow_redirects=False, timeout=10
    )
    assert (response.status_code, response.headers["Location"]) == (301, "/bridge/")


def test_embedded_site_with_the_service_serves_every_protocol(program, tmp_path):
    """docs/examples/embed_site_service.py: its own Site, the bridge's service."""
    from websocket import create_connection

    from twistbridge.testing import JsonLinesClient

    env = examples_env(EMBED_SITE_PORT="0", EMBED_IGOR_PORT="0", EMBED_BGPY_PORT="0")
    service = program(
        [
            twistd(),
            "-n",
            "--pidfile",
            tmp_path / "pid",
            "-y",
            EXAMPLES / "embed_site_service.py",
        ],
        env=env,
        cwd=tmp_path,
    )
    try:
        site = "127.0.0.1:" + service.address(r"Site starting on (\d+)")
        igor = service.address(r"igor listening on (\S+)")
        bgpy = service.address(r"bgpy listening on (\S+)")

        def healthy():
            answer = requests.get(f"http://{site}/bridge/health", timeout=10)
            return answer.status_code == 200 and answer.json()

        health = wait_for(healthy, 10, what="/bridge/health to answer 200")
        assert health["status"] == "ok"
        assert health["services"] == {
            "http": {"up": True, "address": site, "mounted": "/bridge/"},
            "igor": {"up": True, "address": igor},
            "bgpy": {"up": True, "address": bgpy},
        }
        assert (
            b"An existing site" in requests.get(f"http://{site}/", timeout=10).content
        )
        body = {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
        answer = requests.post(f"http://{site}/bridge/rpc", json=body, timeout=10)
        assert answer.json() == {"jsonrpc": "2.0", "result": 5, "id": 1}
        for url in (f"ws://{site}/bridge/ws", f"ws://{igor}/"):
            ws = create_connection(url, timeout=10)
            try:
                ws.send('{"streamId": "a", "action": "echo", "data": "hi"}')
                assert json.loads(ws.recv()) == {"streamId": "a", "data": "hi"}
                assert json.loads(ws.recv()) == {"streamId": "a", "close": True}
            finally:
                ws.close()
        # The service ran init_task: a client goes straight to EXEC.
        with JsonLinesClient(bgpy) as client:
            client.send("EXEC", await_response=True)
            assert client.line() == {
                "type": "OK",
                "args": {"message": "Received 'EXEC'"},
            }
            assert client.line() == {"type": "OK", "args": {"count": 1}}
    finally:
        status = service.stop()
    assert status in (0, -signal.SIGTERM), service.output
