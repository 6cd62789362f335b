# Two set-up commands for a newcomer: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench deps venv clean reliability proto docs

# The library's API reference, from its docstrings (pdoc), in build/docs/.
DOC_MODULES := ocidist.client ocidist.descriptor ocidist.digest ocidist.reference \
	ocidist.errors ocidist.progress ocidist.pull ocidist.push ocidist.copy ocidist.unpack \
	ocidist.artifact ocidist.metadata
docs: venv
	$(BIN)/python -m pdoc --docformat google -o build/docs $(DOC_MODULES)
	@echo "API reference: build/docs/index.html"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,fast,serve]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests and the demo drive for real: the CNCF Distribution
# registry, skopeo and umoci (containerd's ctr where later work needs it), and
# docker.io's dockerd for the docker load/save interop tests.
deps:
	@bash scripts/install-deps.sh

demo: deps venv
	$(BIN)/python scripts/demo.py

# The suite on TEST_WORKERS pytest-xdist workers: most of its time is spent
# waiting (dist subprocesses, registries starting, fault and deadline tests),
# not computing. --dist loadgroup keeps each @pytest.mark.xdist_group on one
# worker (one containerd suite build, one packaging venv, the timing- and
# memory-bound tests one after another). PYTEST_ARGS replaces all of it, e.g.
# PYTEST_ARGS=tests/test_pull.py runs that file alone on one process.
TEST_WORKERS ?= 4
PYTEST_ARGS ?= -n $(TEST_WORKERS) --dist loadgroup
test: deps venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy --strict

bench: deps venv
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# Fault trials with the table of docs/RELIABILITY.md (REL_ARGS=--quick for the
# short form), then the parsers under atheris (the `fuzz` extra, installed
# here: the tests need it not) for FUZZ_SECONDS in all.
reliability: deps venv
	$(BIN)/pip install -q -e '.[test,fast,serve,fuzz]'
	$(BIN)/python scripts/reliability.py $(REL_ARGS)
	$(BIN)/python tests/fuzz/run.py --seconds $(or $(FUZZ_SECONDS),30)

# Regenerate src/ocidist/api/gen from src/ocidist/api/proto (needs grpcio-tools).
proto: venv
	$(BIN)/pip install -q -e '.[test,fast,serve,dev]'
	$(BIN)/python src/ocidist/api/proto/generate.py

clean:
	rm -rf $(VENV) .demo .bench build
