# clearance — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean browser

# The console's browser tests drive Debian's chromium (never a downloaded browser).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clearance demo --home .clearance-demo

test: $(STAMP) browser lint typecheck unit

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the console's browser tests"; \
	  $(SUDO) apt-get install -y -q chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }; }

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Branch coverage of src/clearance, subprocesses included; the floor is
# [tool.coverage.report] fail_under in pyproject.toml, and a run below it fails.
# Two workers (pytest-xdist), one test file each at a time, so a module's server starts once.
unit: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile --cov --cov-report=term

bench: $(STAMP)
	$(BIN)/clearance bench

clean:
	rm -rf $(VENV) .clearance-demo .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
