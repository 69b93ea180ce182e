# restartbench — the README's two commands: `make bench` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# bench parameters (override on the command line: make bench DURATION=60s RESTART_EVERY=10s)
TARGET        ?= wasmtime
DURATION      ?= 40s
RESTART_EVERY ?= 5s
USERS         ?= 20
ARCH          ?=
UNIT          ?=
SCENARIO      ?=
BENCH_ARGS    ?=

.PHONY: all venv apps bench test test-all gate asv report clean

all: test

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+ or run make PYTHON=python3" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP)

apps: $(STAMP)
	$(BIN)/restartbench build-apps

bench: $(STAMP)
	$(BIN)/restartbench run --target $(TARGET) --duration $(DURATION) --restart-every $(RESTART_EVERY) \
	    --users $(USERS) $(if $(ARCH),--arch $(ARCH)) $(if $(SCENARIO),--scenario $(SCENARIO)) --gate --report $(BENCH_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf apps/build .pytest_cache
