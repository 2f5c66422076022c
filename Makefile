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

# RecBole 1.2.1 pins ray<=2.6.3 (the venv has a newer ray), so it lives beside the venv, installed
# without its pins, and only the test that loads an export with RecBole's dataset loader puts it on the path
RECBOLE_SITE := $(VENV)/recbole-site
$(RECBOLE_SITE)/.installed: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --target $(RECBOLE_SITE) recbole==1.2.1 colorlog==4.7.2 \
		colorama==0.4.4 texttable==1.7.2 thop==0.1.1.post2209072238 tensorboard==2.21.0 \
		tensorboard-data-server==0.7.2 markdown==3.11.3
	touch $@

test-all: $(STAMP) $(RECBOLE_SITE)/.installed
	CINEFUSE_RECBOLE_SITE=$(RECBOLE_SITE) $(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/cinefuse demo --workdir $(DEMO_DIR)

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
