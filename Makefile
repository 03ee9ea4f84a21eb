# Every target bootstraps .venv itself: on a fresh machine each is one command.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: help install test lint bench demo lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv with the package, every extra and the dev tools ('.[dev]')

test: $(STAMP)  ## the whole test suite (unit + integration against a real broker and Prometheus)
	$(PY) -m pytest

lint: $(STAMP)  ## ruff, mypy and the import contracts of the layers (docs/ARCHITECTURE.md)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)  ## benchmarks that print numbers (see docs/BENCHMARKS.md)
	$(PY) -m har_stream.cli bench all

demo: $(STAMP)  ## embedded broker + recognizer + simulator, live view, final accuracy
	$(PY) -m har_stream.cli demo

lock: $(STAMP)  ## regenerate deploy/requirements.lock (the serving profile the image installs)
	$(VENV)/bin/uv pip compile pyproject.toml -o deploy/requirements.lock --quiet \
		--constraint deploy/lock-constraints.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
		--custom-compile-command "make lock"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
