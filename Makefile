# HyperBatch: `make demo` runs local mode with example jobs; `make test` runs the lint and the whole suite.
# Both create .venv on first use and reuse it after (pip runs again only when what it installs changed).
# `make demo` installs the runtime alone; `make test` adds the test extras under constraints.txt, the
# versions the suite was last run with, so an upstream release cannot change what CI tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
TESTING := $(VENV)/.testing
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test lint venv bench constraints clean browser

venv: $(RUNTIME)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . -c requirements.txt
	touch $@

$(TESTING): pyproject.toml requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' -c constraints.txt
	touch $@ $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/python examples/demo.py

lint: $(TESTING)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The dashboard's browser test drives Debian's chromium through chromedriver. Installed when missing;
# as root (CI) a failed install fails the target, elsewhere the test says why it skipped.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
		|| { echo "make browser: cannot install chromium and chromium-driver with apt-get" >&2; exit 1; }; \
	else echo "make browser: not root: install chromium and chromium-driver to run the dashboard's browser test" >&2; fi

bench: $(TESTING)
	$(BIN)/python bench/local_throughput.py
	$(BIN)/python bench/latency.py

# Re-pin the test extras: resolve them afresh under the deploy pins, then record what was installed.
constraints: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade -e '.[test,bench]' -c requirements-deploy.txt
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .mypy_cache .ruff_cache
