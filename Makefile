# Two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5020
PYTEST_ARGS ?=
# The suite runs in parallel (pytest-xdist), two workers a core: most tests
# wait on the servers they start, not on the CPU.  `XDIST=` runs it in one
# process (docs/development.rst, "Running the tests").
TEST_WORKERS ?= $(shell echo $$(( 2 * $$(nproc 2>/dev/null || echo 1) )))
XDIST ?= -n $(TEST_WORKERS) --dist loadgroup
ARGS ?=

.PHONY: run test lint docs bench fuzz clean install browser-deps system-deps nginx-deps openrpc-schema docs-deps prometheus-deps redis-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# The project is installed as users install it: a plain, non-editable
# `pip install .` (the twistd plugin file must land in site-packages).
install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade '.'

run: install
	$(BIN)/twistd -n bridge --port $(PORT) $(ARGS)

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet '.[test,docs]'
	touch $@

# The twistd subprocesses of the tests run the installed copy: `make test`
# reinstalls it (no deps) only when a file of the package changed since.
PACKAGE_FILES := pyproject.toml $(shell find twistbridge twisted -type f \
  -not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null)
$(VENV)/.installed: $(PACKAGE_FILES) $(VENV)/.test-deps
	$(BIN)/pip install --quiet --no-deps --force-reinstall '.'
	touch $@

# The socket-activation tests run the real `systemd-socket-activate` (Debian
# package `systemd`): install it when missing and we may (root with apt-get);
# otherwise those tests are skipped, saying why.
system-deps:
	@command -v systemd-socket-activate >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends systemd) >/dev/null 2>&1 \
	      || echo "note: could not install systemd-socket-activate" >&2; \
	  else echo "note: systemd-socket-activate is missing: its tests will be skipped" >&2; fi; }

# The OpenRPC meta-schema (and the JSON-Schema meta-schema it refers to),
# from their npm packages, for the tests that validate rpc.discover.
OPENRPC_SCHEMA := $(VENV)/share/openrpc
openrpc-schema: $(OPENRPC_SCHEMA)/openrpc.json
$(OPENRPC_SCHEMA)/openrpc.json: | $(BIN)/python
	@mkdir -p $(OPENRPC_SCHEMA)
	@if command -v npm >/dev/null && command -v node >/dev/null; then \
	  cd $(OPENRPC_SCHEMA) && npm pack --silent @open-rpc/meta-schema@1.14.9 \
	    @json-schema-tools/meta-schema@1.8.0 >/dev/null \
	  && mkdir -p openrpc-pkg jst-pkg \
	  && tar xzf open-rpc-meta-schema-1.14.9.tgz -C openrpc-pkg \
	  && tar xzf json-schema-tools-meta-schema-1.8.0.tgz -C jst-pkg \
	  && cp jst-pkg/package/schema.json json-schema.json \
	  && node -e 'process.stdout.write(JSON.stringify(require("./openrpc-pkg/package").openrpcDocument))' > openrpc.json.tmp \
	  && mv openrpc.json.tmp openrpc.json; \
	else echo "no npm/node: the OpenRPC meta-schema test will be skipped"; fi

# Debian's nginx (the deployment guide's site is tested in front of a real
# server): installed when missing and we are root, else that test is skipped.
nginx-deps:
	@if [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends nginx openssl >/dev/null; } \
	  || echo "nginx could not be installed: the nginx test will be skipped"; \
	else echo "no /usr/sbin/nginx and not root: the nginx test will be skipped"; fi

# Debian's prometheus, for its promtool (tests/test_metrics.py checks the
# scrape job and the queries of docs/operations.rst with it): installed when
# missing and we are root, else those tests are skipped.
prometheus-deps:
	@if command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	  || echo "prometheus could not be installed: the promtool tests will be skipped"; \
	else echo "no promtool and not root: the promtool tests will be skipped"; fi

# Debian's redis-server (the --broker tests start one of their own on a free
# port): installed when missing and we are root, else those tests are skipped.
redis-deps:
	@if [ -x /usr/bin/redis-server ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends redis-server >/dev/null; } \
	  || echo "redis-server could not be installed: the broker tests will be skipped"; \
	else echo "no /usr/bin/redis-server and not root: the broker tests will be skipped"; fi

# The inventories of Python's and Twisted's documentation (Debian's
# python3-doc and twisted-doc), which the API reference links to: installed
# when missing and we are root, else the documentation tests are skipped.
docs-deps:
	@if [ -f /usr/share/doc/python3/html/objects.inv ] \
	  && [ -f /usr/share/doc/twisted-doc/html/api/objects.inv ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends python3-doc twisted-doc >/dev/null; } \
	  || echo "python3-doc/twisted-doc could not be installed: the docs tests will be skipped"; \
	else echo "no python3-doc/twisted-doc and not root: the docs tests will be skipped"; fi

# Debian's Chromium and ChromeDriver for the playground's browser test:
# installed when missing and we are root, else that test is skipped.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "no /usr/bin/chromium and not root: the browser test will be skipped"; fi

test: $(VENV)/.installed browser-deps system-deps nginx-deps openrpc-schema docs-deps prometheus-deps redis-deps
	$(BIN)/ruff check twistbridge tests bench twisted docs
	$(BIN)/ruff format --check twistbridge tests bench twisted docs
	@# pytest rewrites the asserts of each test module it imports, and every
	@# worker would rewrite all of them again (about 8 s of CPU each): one
	@# collection, beside mypy, writes the rewritten modules to __pycache__
	@# (even where PYTHONDONTWRITEBYTECODE is set), and the workers read them.
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -qq $(PYTEST_ARGS) >/dev/null 2>&1 & \
	  $(BIN)/mypy; status=$$?; wait; exit $$status
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

# The manual and its API reference (pydoctor, into docs/_build/html/reference),
# warnings as errors (tests/test_docs.py builds them too).
docs: $(VENV)/.test-deps docs-deps
	$(BIN)/sphinx-build -W -n -b html docs docs/_build/html

lint: $(VENV)/.test-deps
	$(BIN)/ruff check twistbridge tests bench twisted docs
	$(BIN)/ruff format --check twistbridge tests bench twisted docs
	$(BIN)/mypy

# The property-based tests with many more examples (FUZZ_SCALE times).
FUZZ_SCALE ?= 50
fuzz: $(VENV)/.installed
	TWISTBRIDGE_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/pytest -m hypothesis -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
