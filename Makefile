# The few commands people type. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cryostream-installed

.PHONY: demo test test-all docs lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

demo: $(STAMP)  ## simulate a small EMPIAR-10025-like set and run the pipeline on it
	$(PY) examples/demo.py demo-output

PYTEST_ARGS ?=  # more pytest options, e.g. make test PYTEST_ARGS="-k denoise -x"

test: $(STAMP)  ## the test suite without slow or GPU tests (about 15 min on 2 cores; the 30 slowest named); fails if none ran
	$(PY) -m pytest --durations=30 $(PYTEST_ARGS)

test-all: $(STAMP)  ## every CPU test, slow ones included
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

docs: $(STAMP)  ## the HTML docs with the API reference, warnings as errors
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

lint: $(STAMP)
	$(VENV)/bin/ruff check cryostream tests benchmarks examples

bench: $(STAMP)  ## the CPU benchmarks (write bench-output/; need ~35 GB of disk and ~30 min)
	$(PY) benchmarks/bench_read.py --out bench-output
	$(PY) benchmarks/bench_prepare.py --out bench-output --naive-sizes 4 8 16
	$(PY) benchmarks/bench_loader.py --out bench-output

clean:
	rm -rf demo-output bench-output docs/_build
