# The two commands a new user runs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean chromium

demo: $(STAMP)
	$(VENV)/bin/umiq demo

test: $(STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# The review page is tested in real headless Chromium (Debian's package; Playwright
# drives it, no browser download). Installed when missing and apt-get can run.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium is missing: install Debian's chromium package for the review-page test"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(STAMP)

# torch first, pinned to the CPU build: an unpinned torch pulls a multi-GB CUDA build.
# The rest at the versions in constraints.txt (what the suite and the figures ran on).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,models]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .umiq .pytest_cache
