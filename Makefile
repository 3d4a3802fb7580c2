# The two commands a new user runs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# llama.cpp's home (source, build, binaries), shared by every checkout on the machine.
UMIQ_ENGINE_HOME ?= $(HOME)/.cache/umiq/engines/llama.cpp
export UMIQ_ENGINE_HOME
ENGINE_JOBS ?= 2

.PHONY: demo test lint install clean chromium engine

demo: $(STAMP)
	$(VENV)/bin/umiq demo

test: $(STAMP) chromium engine
	$(PY) -m pytest $(PYTEST_ARGS)

# The engine tests serve the shipped adapters from a real llama-server: build it once into
# UMIQ_ENGINE_HOME (CMake and a C/C++ compiler; the first build takes long, later runs are
# no-ops), then convert the base (fetched if missing) and the shipped adapters to GGUF in
# .umiq/engines/gguf (only what changed). The shipped adapters whatever the shell says.
engine: $(STAMP)
	$(VENV)/bin/umiq models build-engine --jobs $(ENGINE_JOBS)
	env -u UMIQ_ADAPTERS_DIR -u UMIQ_BASE_MODEL -u UMIQ_AGENT UMIQ_SHIPPED_ADAPTERS=1 \
	  $(VENV)/bin/umiq models export-gguf

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
