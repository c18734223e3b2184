# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint clean bench

install: $(VENV)/.installed

# uv (from PyPI) makes the install take seconds; plain pip is the fallback.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv || true
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]' \
	  || $(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q elt taps targets >/dev/null
	touch $@

demo: install
	$(BIN)/python -m elt.sample data
	$(BIN)/elt run daily

test: install
	@# three processes, a file each (many tests wait on subprocesses, servers and brokers, so three beat
	@# two on two cores); singer-sdk's standard suites name their tests after tables made at collection,
	@# which xdist's processes would each name differently, so they run after, alone
	$(BIN)/python -m pytest -q -n 3 --dist loadfile --ignore tests/test_sdk_standard.py
	$(BIN)/python -m pytest -q tests/test_sdk_standard.py

lint: install
	$(BIN)/ruff check elt taps targets tests
	$(BIN)/ruff format --check elt taps targets tests
	$(BIN)/mypy

# elt against its peers on one PostgreSQL table (bench/README.md); ROWS=10000000 for a bigger table.
ROWS ?= 1000000
bench: install
	@# bytecode of sources changed since the install, so no case pays for compiling them
	$(BIN)/python -m compileall -q elt taps targets >/dev/null
	$(BIN)/python bench/run.py --rows $(ROWS)

clean:
	rm -rf .elt data models/target models/logs
