# devbook: `make book` (cpu preset), `make book PRESET=smoke`, `make test`, `make bench`.
PRESET ?= cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test check lint bench venv corpus chromium clean

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

# Lint and format check (ruff, configured in pyproject.toml), the unit tests, every chapter
# executed at smoke, the strict HTML render of those notebooks and the headless-Chromium check
# of every page (screenshots in _build/screens/).
test: lint $(STAMP) corpus chromium
	rm -rf _build/executed/smoke
	$(PY) -m pytest tests -q --ignore=tests/test_browser.py
	$(PY) -m devbook.book render --preset smoke --html _build/smoke/html
	$(PY) -m pytest -q tests/test_browser.py

# For development: lint and the unit tests not marked slow (no chapter execution), in minutes.
check: lint $(STAMP) corpus
	$(PY) -m pytest tests -q -m "not slow" --ignore=tests/test_browser.py

lint: $(STAMP)
	$(PY) -m ruff check devbook tests benchmarks
	$(PY) -m ruff format --check devbook tests benchmarks

# Debian's Chromium and ChromeDriver for the browser test (apt-get update if lists are missing).
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
chromium:
	test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || $(APT_INSTALL) chromium chromium-driver \
	  || { apt-get update -qq && $(APT_INSTALL) chromium chromium-driver; }

bench: $(STAMP)
	$(PY) -m pip install -q --no-deps -r benchmarks/requirements.txt
	$(PY) benchmarks/llc_vs_devinterp.py
	$(PY) benchmarks/llc_vs_devinterp.py --threads 1
	$(PY) benchmarks/calibration_vs_devinterp.py
	$(PY) benchmarks/regression.py
	$(PY) benchmarks/ed.py
	$(PY) benchmarks/hessian_vs_pyhessian.py

clean:
	rm -rf _build
