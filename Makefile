# Two commands do all set-up on a fresh clone: `make bench` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BENCH  := $(VENV)/bin/bench
# GPU=1: make sure torch is a CUDA build (see README, "GPU install").
GPU    ?= 0
STAMP  := $(VENV)/.installed-$(GPU)

# Which suite `make bench` runs: scenarios/cuda when torch sees a CUDA device, else scenarios/cpu.
SUITE  ?= $(shell $(PY) -c "import torch; print('scenarios/cuda' if torch.cuda.is_available() else 'scenarios/cpu')" 2>/dev/null)
OUT    ?= reports/bench-$(shell date -u +%Y%m%d-%H%M%S)

.PHONY: install bench test validate clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
ifeq ($(GPU),1)
	@# A local CPU wheel directory (pip's find-links) could shadow PyPI's CUDA build of the same version.
	$(PY) -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" || \
	  $(PY) -m pip install -q --isolated --force-reinstall --no-deps -c constraints.txt torch
	$(PY) -c "import torch; assert torch.version.cuda, 'torch is a CPU build'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available:', torch.cuda.is_available())"
endif
	@rm -f $(VENV)/.installed-*
	@touch $@

# The report is written even when a run failed (failed points are in it); make still exits non-zero then.
bench: install
	@mkdir -p $(OUT) && ln -sfn $(notdir $(OUT)) reports/latest
	$(BENCH) run $(SUITE) --out $(OUT); rc=$$?; \
	  $(BENCH) report $(OUT) && echo "results and report: $(OUT) (also reports/latest)" && exit $$rc

validate: install
	$(BENCH) validate scenarios/cpu scenarios/cuda scenarios/examples

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) reports/bench-* reports/latest
