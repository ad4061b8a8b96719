# Every target installs what it needs into .venv first (torch's CPU wheel before anything that depends on torch,
# so pip never resolves a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-fast demo demo-quick bench

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	@echo "[setup 1/3] creating the virtual environment $(VENV) (once; later make targets reuse it)"
	@$(PYTHON) -m venv $(VENV)
	@echo "[setup 2/3] installing torch $(TORCH_VERSION), CPU wheel first (so nothing pulls a CUDA build)"
	@$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	@echo "[setup 3/3] installing modeling_avigate and its dependencies (transformers, datasets, accelerate, PyAV, faiss, pytest, ...)"
	@$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@
	@echo "[setup] done: $(VENV) is ready"

test: setup
	$(BIN)/python -m pytest -q -rs

test-fast: setup
	$(BIN)/python -m pytest -q -rs -m "not slow"

demo: setup
	$(BIN)/python examples/demo.py

demo-quick: setup
	$(BIN)/python examples/demo.py --quick
