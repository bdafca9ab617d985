# Two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5020
PYTEST_ARGS ?=

.PHONY: run test lint docs bench fuzz clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# The project is installed as users install it: a plain, non-editable
# `pip install .` (the twistd plugin file must land in site-packages).
install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade '.'

run: install
	$(BIN)/twistd -n bridge --port $(PORT)

$(VENV)/.test-deps: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet '.[test,docs]'
	touch $@

test: $(VENV)/.test-deps
	$(BIN)/pip install --quiet --no-deps --force-reinstall '.'
	$(BIN)/ruff check twistbridge tests bench twisted setup.py
	$(BIN)/pytest $(PYTEST_ARGS)

# The manual, warnings as errors (tests/test_docs.py builds it too).
docs: $(VENV)/.test-deps
	$(BIN)/sphinx-build -W -n -b html docs docs/_build/html

lint: $(VENV)/.test-deps
	$(BIN)/ruff check twistbridge tests bench twisted setup.py
	$(BIN)/ruff format --check twistbridge tests bench twisted setup.py

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
