# Two commands do all set-up on a fresh clone: `make bench` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BENCH  := $(VENV)/bin/bench
# GPU=1: make sure torch is a CUDA build (see README, "GPU install").
GPU    ?= 0
STAMP  := $(VENV)/.installed-$(GPU)

# Which bundled suite `make bench` runs (bench/suites/, also scenarios/): cuda when torch sees a CUDA device, else cpu.
# Recursive (?=), so it is evaluated in the recipe, after `install` made the venv.
SUITE  ?= $(shell $(PY) -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null)
# Evaluated once (:=), so every use in the recipe names the same directory.
NOW    := $(shell date -u +%Y%m%d-%H%M%S)
OUT    ?= reports/bench-$(NOW)

.PHONY: install bench test test-fast lint validate clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(GPU),1)
	@# Same module, two packages: remove the CPU build before installing the CUDA one.
	$(PY) -m pip uninstall -q -y onnxruntime 2>/dev/null || true
	$(PY) -m pip install -q -c constraints.txt -e ".[test,gpu,ray]"
else
	$(PY) -m pip uninstall -q -y onnxruntime-gpu 2>/dev/null || true
	$(PY) -m pip install -q -c constraints.txt -e ".[test,cpu,ray]"
endif
ifeq ($(GPU),1)
	@# PyPI's torch for Linux x86-64 is the CUDA build; a local CPU wheel (pip find-links) can shadow it.
	@$(PY) -c "import torch, sys; print('torch', torch.__version__, 'CUDA build', torch.version.cuda, 'CUDA available', torch.cuda.is_available()); sys.exit(0 if torch.version.cuda else 1)" || \
	  { echo "torch is a CPU build: reinstall PyPI's CUDA build with $(PY) -m pip install --force-reinstall -c constraints.txt torch" >&2; exit 1; }
endif
	@rm -f $(VENV)/.installed-*
	@touch $@

# `bench calibrate` is stored per device (~/.cache/aigc-bench/calibration/), so it measures once per machine;
# without it the report's roofline has no calibrated ceiling. CALIBRATE: the device it calibrates.
CALIBRATE ?= auto

# The report is written even when a run failed (failed points are in it); make still exits non-zero then.
bench: install
	@mkdir -p $(OUT) reports && ln -sfn $(abspath $(OUT)) reports/latest
	$(BENCH) calibrate --device $(CALIBRATE) || echo "bench calibrate failed: the report will have no calibrated efficiency" >&2
	$(BENCH) run $(SUITE) --out $(OUT); rc=$$?; \
	  $(BENCH) report $(OUT) && echo "results and report: $(OUT) (also reports/latest)" && exit $$rc

# The regression gate's CI suite: every point with repeats, a pytest-benchmark export, and, when BASELINE names
# a run directory or a saved baseline, the gate itself (its exit code: 0 pass, 1 regression/failure, 2 refused).
CI_SUITE    ?= ci
CI_REPEATS  ?= 5
CI_OUT      ?= reports/ci-$(NOW)
GATE_CONFIG ?= gate.yaml
BASELINE    ?=

.PHONY: bench-ci
bench-ci: install
	$(BENCH) run $(CI_SUITE) --repeats $(CI_REPEATS) --out $(CI_OUT); rc=$$?; \
	  $(BENCH) export $(CI_OUT) --format pytest-benchmark --out $(CI_OUT)/pytest-benchmark.json || exit $$?; \
	  if [ -n "$(BASELINE)" ]; then \
	    $(BENCH) compare $(BASELINE) $(CI_OUT) --config $(GATE_CONFIG) --out $(CI_OUT)/gate; rc=$$?; \
	  fi; \
	  echo "results: $(CI_OUT)"; exit $$rc

# The gate interleaved (docs/gate.md, "Interleaved A/B"): BASE_REF's bench (a git worktree in .ab/) and this checkout's
# run the CI suite in alternating rounds, so a slow period of the machine hits both; then the paired gate.
# 8 rounds, not 5: a paired comparison has rounds − 1 degrees of freedom (docs/measurements/2026-11-23-gate-quality.md).
BASE_REF  ?= origin/main
AB_ROUNDS ?= 8
.PHONY: bench-ab
bench-ab: install
	rm -rf .ab/base && git worktree prune && git worktree add --detach .ab/base $(BASE_REF)
	$(BENCH) ab $(CI_SUITE) --repeats $(AB_ROUNDS) --baseline-code .ab/base --out $(CI_OUT); rc=$$?; \
	  $(BENCH) export $(CI_OUT)/current --format pytest-benchmark --out $(CI_OUT)/pytest-benchmark.json || exit $$?; \
	  $(BENCH) compare $(CI_OUT)/baseline $(CI_OUT)/current --config $(GATE_CONFIG) --out $(CI_OUT)/gate || rc=$$?; \
	  echo "results: $(CI_OUT)"; exit $$rc

validate: install
	$(BENCH) validate cpu cuda cuda-quick cuda-check examples ci ci-cuda

# System packages the tests need: chromium renders the HTML report (tests/test_report.py). Installed with
# apt-get when absent and this is a root Debian/Ubuntu shell; otherwise that one test skips and says why.
CHROMIUM ?= /usr/bin/chromium
.PHONY: test-deps
test-deps:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends chromium \
	    || echo "test-deps: could not install chromium: the headless-browser test will skip" >&2; \
	else echo "test-deps: $(CHROMIUM) absent and apt-get (as root) unavailable: the headless-browser test will skip" >&2; fi

# Two phases (docs/testing.md, "Two phases"): every test but the `serial` ones, TEST_WORKERS at a time (pytest-xdist,
# a module per worker: module fixtures run once; one torch thread per process, so two workers do not oversubscribe
# two cores), then the `serial` ones alone (the shared sweeps, which use both cores, and the tests whose timing
# another test beside them would move). --durations: the slowest of each phase.
TEST_WORKERS ?= 2
test: install test-deps
	@export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -m "not serial" -n $(TEST_WORKERS) --dist loadscope --durations=15; parallel=$$?; \
	$(PY) -m pytest -q -m serial --durations=15; serial=$$?; \
	echo "make test: parallel phase exit $$parallel, serial phase exit $$serial"; \
	[ $$parallel -eq 0 ] && [ $$serial -eq 0 ]

# The unit tests only: no CLI process, no sweep, no worker subprocess (tests/markers.py marks them; docs/design.md, "Tests").
test-fast: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m "not e2e" --durations=10

# ruff's settings are in pyproject.toml (line length 120).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) reports/bench-* reports/latest .ab
