# restartbench — the README's two commands: `make bench` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# bench parameters (override on the command line: make bench DURATION=60s RESTART_EVERY=10s)
#   ARCH=arm64 (aarch64, x86_64, amd64; default this machine's) or a list ARCH=x86_64,arm64
#   UNIT=1.32.0,1.32.1 (names from `restartbench targets`) selects Unit builds instead of TARGET;
#   UNITS=path/to/units.toml says where they are listed (exported as RESTARTBENCH_UNITS)
#   UNIT_SOURCE=a git URL, checkout or bundle of Unit: the UNIT revisions no build answers to are
#   built from it first (restartbench build unit --missing; default: the public repository), per ARCH;
#   UNIT_FLAVOR=freeunit for FreeUnit's
#   SCENARIO=mixed or a list; several targets, arches or scenarios make a matrix run
TARGET        ?= wasmtime
DURATION      ?= 40s
RESTART_EVERY ?= 5s
USERS         ?=
ARCH          ?=
UNIT          ?=
SCENARIO      ?=
BENCH_ARGS    ?=
UNITS         ?=
UNIT_SOURCE   ?=
UNIT_FLAVOR   ?= unit
ifneq ($(UNITS),)
export RESTARTBENCH_UNITS := $(abspath $(UNITS))
endif

comma := ,
empty :=
space := $(empty) $(empty)
list   = $(subst $(comma),$(space),$(1))
norm_arch = $(patsubst amd64,x86_64,$(patsubst arm64,aarch64,$(patsubst arm64v8,aarch64,$(1))))
deb_arch  = $(patsubst x86_64,amd64,$(patsubst aarch64,arm64,$(1)))
HOST_ARCH := $(call norm_arch,$(shell uname -m))
ARCHES    := $(call norm_arch,$(call list,$(ARCH)))
FOREIGN   := $(sort $(filter-out $(HOST_ARCH),$(ARCHES)))
TARGETS   := $(if $(UNIT),$(subst $(space),$(comma),$(addprefix unit@,$(call list,$(UNIT)))),$(TARGET))
MATRIX    := $(or $(word 2,$(call list,$(TARGETS))),$(word 2,$(ARCHES)),$(word 2,$(call list,$(SCENARIO))))
# emulated hosts are ~5x slower: fewer Locust users keep such a run bounded (same for every cell)
BENCH_USERS := $(or $(USERS),$(if $(FOREIGN),10,20))
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all venv apps bench emulator unit-build-deps test test-all gate asv asv-unit report clean layout health

all: test

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+ or run make PYTHON=python3" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# (the editable install maps restartbench.analysis to ./analysis; setuptools then warns about folders named like the package: ours are the package)
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP)

apps: $(STAMP)
	$(BIN)/restartbench build-apps

# ... a longer request timeout (a request takes ~0.8 s under qemu-user) and no held /sleep requests:
# under qemu-user the Unit wasm app's /sleep?ms=500 hardly ever completes (seen: 1 of 16), it waits
# for the next restart (503) or times out, so it would measure the emulator, not the restart
BENCH_TIMEOUT := $(if $(FOREIGN),--request-timeout 4s --sleep-share 0)
RUN_FLAGS = --duration $(DURATION) --restart-every $(RESTART_EVERY) --users $(BENCH_USERS) $(BENCH_TIMEOUT) \
	    $(if $(SCENARIO),--scenario $(SCENARIO)) --gate --report $(BENCH_ARGS)

bench: $(STAMP) $(if $(FOREIGN),emulator)
ifneq ($(UNIT),)
	@for arch in $(or $(ARCHES),$(HOST_ARCH)); do \
	  $(BIN)/restartbench build unit --missing --rev $(UNIT) --arch $$arch --flavor $(UNIT_FLAVOR) \
	    $(if $(UNIT_SOURCE),--source $(UNIT_SOURCE)) || exit $$?; \
	done
endif
ifeq ($(MATRIX),)
	$(BIN)/restartbench run --target $(TARGETS) $(if $(ARCH),--arch $(ARCH)) $(RUN_FLAGS)
else
	$(BIN)/restartbench matrix --targets $(TARGETS) $(if $(ARCH),--arch $(ARCH)) $(RUN_FLAGS)
endif

# user-mode emulation for a foreign ARCH: Debian's qemu-user-static (also the emulation controls'
# qemu-x86_64-static) plus that arch's C library and libgcc (the sysroot qemu's -L points at) and its
# multiarch runtime (libc6, libssl3, libpcre2-8-0 of that arch: what a foreign Unit build links);
# installed with apt-get only when something is missing
emulator:
ifeq ($(FOREIGN),)
	@echo "emulator: ARCH=$(or $(ARCH),$(HOST_ARCH)) runs natively on this $(HOST_ARCH) machine; nothing to install"
else
	@need=""; \
	for a in $(FOREIGN); do \
	  case $$a in aarch64|x86_64) ;; *) echo "error: ARCH $$a: use x86_64 (amd64) or aarch64 (arm64)" >&2; exit 2;; esac; \
	  d=$$(echo $$a | sed -e s/aarch64/arm64/ -e s/x86_64/amd64/); \
	  command -v qemu-$$a-static >/dev/null || need="$$need qemu-user-static"; \
	  ls /usr/$$a-linux-gnu/lib/ld-linux*.so* >/dev/null 2>&1 || need="$$need libc6-$$d-cross"; \
	  test -e /usr/$$a-linux-gnu/lib/libgcc_s.so.1 || need="$$need libgcc-s1-$$d-cross"; \
	  for p in libc6 libssl3 libpcre2-8-0; do dpkg -s $$p:$$d >/dev/null 2>&1 || { need="$$need $$p:$$d"; multi="$$multi $$d"; }; done; \
	done; \
	need=$$(echo $$need | tr ' ' '\n' | sort -u | xargs); \
	if [ -z "$$need" ]; then echo "emulator: qemu-user, the $(FOREIGN) sysroot and runtime are installed"; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "error: $(FOREIGN) binaries need user-mode emulation: install $$need (Debian/Ubuntu names) and retry" >&2; exit 2; }; \
	echo "emulator: $(FOREIGN) binaries run under qemu-user; installing $$need:"; \
	for d in $$(echo $$multi | tr ' ' '\n' | sort -u); do echo "+ $(SUDO) dpkg --add-architecture $$d"; $(SUDO) dpkg --add-architecture $$d || exit 2; done; \
	echo "+ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y --no-install-recommends $$need"; \
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$need
endif

# what building Unit from source needs (restartbench build unit): compilers, libclang, OpenSSL and
# PCRE2 headers; for ARCH=arm64 the cross compiler, arm64 libraries and qemu-user (apt-get, once)
unit-build-deps: $(STAMP)
	$(BIN)/restartbench build-deps $(if $(ARCH),--arch $(ARCH))

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

# asv history (asv.conf.json, benchmarks/restarts.py): each parameter combination (host version x
# scenario) runs once; the working tree is measured and recorded at HEAD's commit. One asv machine per
# arch (<hostname>-<arch>) keeps architectures apart in the HTML. ARCH=, SCENARIO= (lists ok) and, only
# when given, TARGET=/UNIT= (default: every host found) and DURATION= go to the benchmarks (their env
# vars: benchmarks/restarts.py); ASV_ARGS= to `asv run` (e.g. --bench track_lingering).
ASV_ARGS ?=
asv: $(STAMP) $(if $(FOREIGN),emulator)
	@commit=$$(git rev-parse HEAD) || exit 2; rc=0; \
	$(BIN)/asv machine --yes >/dev/null || exit 2; \
	for arch in $(or $(ARCHES),$(HOST_ARCH)); do \
	  machine=$$(uname -n)-$$arch; \
	  echo "asv: machine $$machine, commit $$commit"; \
	  $(BIN)/asv machine --yes --machine $$machine --arch $$arch >/dev/null || exit 2; \
	  env RESTARTBENCH_ASV_ARCH=$$arch $(if $(SCENARIO),RESTARTBENCH_ASV_SCENARIOS=$(SCENARIO)) \
	    $(if $(UNIT)$(filter command line environment,$(origin TARGET)),RESTARTBENCH_ASV_TARGETS=$(TARGETS)) \
	    $(if $(filter command line environment,$(origin DURATION)),RESTARTBENCH_ASV_DURATION=$(DURATION)) \
	    $(BIN)/asv run --machine $$machine --set-commit-hash $$commit \
	      --environment existing:$(abspath $(BIN)/python) --show-stderr $(ASV_ARGS) || rc=$$?; \
	done; \
	$(BIN)/asv publish || exit 2; \
	$(BIN)/restartbench offline-html results/html || exit 2; \
	echo "asv HTML: $(abspath results/html)/index.html (serve it: $(BIN)/asv preview)"; \
	exit $$rc

# asv along Unit's history (asv.unit.conf.json; restartbench/hosts/unit/asv.py): asv builds each Unit commit
# of REVS with restartbench's builder and runs the restart benchmarks on it, then publishes the graphs
# (results/html-unit). UNIT_SOURCE= a git URL, checkout or bundle (default Unit's public repository);
# REVS= a git range (default 1.32.0^..1.32.1: the 1.32.0 release through the fix to 1.32.1);
# DURATION=/SCENARIO= as for `make asv`. Then: asv find --config asv.unit.conf.json RANGE BENCHMARK.
REVS ?= 1.32.0^..1.32.1
asv-unit: $(STAMP)
	@$(BIN)/python -c 'import sys; from restartbench.hosts.unit import asv; asv.link_source(sys.argv[1] or None, sys.argv[2])' \
	    "$(UNIT_SOURCE)" "$(UNIT_FLAVOR)" || exit 2
	@arch=$(or $(ARCHES),$(HOST_ARCH)); machine=$$(uname -n)-$$arch; \
	$(BIN)/asv machine --yes --config asv.unit.conf.json --machine $$machine --arch $$arch >/dev/null || exit 2; \
	env RESTARTBENCH_ASV_ARCH=$$arch $(if $(SCENARIO),RESTARTBENCH_ASV_SCENARIOS=$(SCENARIO)) \
	    $(if $(filter command line environment,$(origin DURATION)),RESTARTBENCH_ASV_DURATION=$(DURATION)) \
	    $(BIN)/asv run --config asv.unit.conf.json --machine $$machine --show-stderr $(ASV_ARGS) "$(REVS)"; rc=$$?; \
	$(BIN)/asv publish --config asv.unit.conf.json || exit 2; \
	$(BIN)/restartbench offline-html results/html-unit || exit 2; \
	echo "asv HTML: $(abspath results/html-unit)/index.html (serve it: $(BIN)/asv preview --config asv.unit.conf.json)"; exit $$rc

# judge runs: `restartbench gate` exits 0 pass / 1 fail / 2 unusable input (make itself can only exit 0
# or 2: it says which one it was; scripts that need the code call .venv/bin/restartbench gate directly).
# RUNS= run dirs, space or comma separated (default the latest under results/runs), LIMITS= a limits
# TOML (default gates/default.toml), BASELINE= baseline run dirs
RUNS     ?= latest
LIMITS   ?=
BASELINE ?=
gate: $(STAMP)
	@$(BIN)/restartbench gate $(call list,$(RUNS)) $(if $(LIMITS),--limits $(LIMITS)) \
	    $(if $(BASELINE),--baseline $(call list,$(BASELINE))) || { rc=$$?; \
	  case $$rc in 1) why="a check failed";; 2) why="unusable input";; *) why="it was stopped";; esac; \
	  echo "gate: restartbench gate exited $$rc: $$why" >&2; \
	  exit $$rc; }

# the health of every release: each Unit and FreeUnit release from HEALTH_SINCE on built, run HEALTH_RUNS times
# with the same plan, one page (results/runs/health-*/health.html). Sources default to the public repositories:
# make health UNIT_SOURCE=../shared/unit/src/nginx-unit.bundle FREEUNIT_SOURCE=../shared/unit/src/freeunit.bundle
HEALTH_SINCE ?= 1.32.0
HEALTH_RUNS  ?= 3
FREEUNIT_SOURCE ?=
HEALTH_ARGS  ?= --duration 30s --restart-every 4s --warmup 3s --cooldown 4s --grace 3s --window 3s
health: $(STAMP) unit-build-deps
	$(BIN)/restartbench health --since $(HEALTH_SINCE) --runs $(HEALTH_RUNS) \
	  $(if $(UNIT_SOURCE),--unit-source $(UNIT_SOURCE)) $(if $(FREEUNIT_SOURCE),--freeunit-source $(FREEUNIT_SOURCE)) \
	  $(HEALTH_ARGS) || { rc=$$?; \
	  case $$rc in 1) why="a release failed the gate (the table above, health.md)";; 2) why="unusable input";; \
	    *) why="it was stopped";; esac; \
	  echo "health: restartbench health exited $$rc: $$why" >&2; \
	  exit $$rc; }

# lines per module, who imports whom, and imports against docs/layout.md's rules (tests/layout.py --dot: a graph)
layout: $(STAMP)
	$(BIN)/python tests/layout.py

clean:
	rm -rf apps/build .pytest_cache
