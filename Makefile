# Every target bootstraps .venv itself: on a fresh machine each is one command.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: help install test lint bench demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv with the package and its dev tools

test: $(STAMP)  ## the whole test suite (unit + integration against a real broker and Prometheus)
	$(PY) -m pytest

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)  ## benchmarks that print numbers (see docs/BENCHMARKS.md)
	$(PY) -m har_stream.cli bench all

demo: $(STAMP)  ## embedded broker + recognizer + simulator, live view, final accuracy
	$(PY) -m har_stream.cli demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
