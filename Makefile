# devbook: `make book` (cpu preset), `make book PRESET=smoke`, `make test`, `make bench`.
PRESET ?= cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test bench venv corpus clean

venv: $(STAMP)

# torch first: a range that 2.13.0 does not satisfy would pull GBs of CUDA wheels.
$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The language corpus comes from Debian packages (apt-get download; apt-get update if lists are missing).
corpus: $(STAMP)
	$(PY) -m devbook.language.corpus || { apt-get update -qq && $(PY) -m devbook.language.corpus; }

book: $(STAMP) corpus
	$(PY) -m devbook build --preset $(PRESET)

test: $(STAMP) corpus
	rm -rf _build/executed/smoke
	$(PY) -m pytest tests -q
	$(PY) -m pytest --nbval-lax -p no:cacheprovider -q _build/executed/smoke

bench: $(STAMP)
	$(PY) -m pip install -q --no-deps -r benchmarks/requirements.txt
	$(PY) benchmarks/llc_vs_devinterp.py
	$(PY) benchmarks/llc_vs_devinterp.py --threads 1
	$(PY) benchmarks/regression.py

clean:
	rm -rf _build
