# make test / make demo create and reuse .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cinefuse-installed
EXTRAS ?= dev,ray
DEMO_DIR ?= cinefuse-demo

.PHONY: install test test-all demo bench clean help

help:
	@echo "make test      run the test suite (what CI runs)"
	@echo "make demo      run the whole pipeline offline on the embedded demo collection"
	@echo "make test-all  also run the tests marked slow"
	@echo "make bench     run the benchmarks (writes benchmarks/results/*.json)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/cinefuse demo --workdir $(DEMO_DIR)

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
