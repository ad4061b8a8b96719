# Every target installs what it needs into .venv first (torch's CPU wheel before anything that depends on torch,
# so pip never resolves a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-fast demo demo-quick

setup: $(VENV)/.installed

# pip --no-compile: byte-compiling every installed module took a third of the install (23 of 61 s); Python compiles
# the few modules a run imports when it first imports them.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --no-compile

# What the demo needs: the package with its training, evaluation and retrieval extras.
$(VENV)/.installed-demo: setup.py
	@echo "[setup 1/3] creating the virtual environment $(VENV) (once; later make targets reuse it)"
	@$(PYTHON) -m venv $(VENV)
	@echo "[setup 2/3] installing torch $(TORCH_VERSION), CPU wheel first (so nothing pulls a CUDA build)"
	@$(PIP_INSTALL) torch==$(TORCH_VERSION)
	@echo "[setup 3/3] installing modeling_avigate and what the demo needs (transformers, datasets, accelerate, PyAV, faiss, ...)"
	@$(PIP_INSTALL) -e ".[train,eval,retrieval]"
	@touch $@
	@echo "[setup] done: $(VENV) is ready for the demo"

# What the tests need on top: pytest, the web page (gradio) and its browser driver, wheel building.
$(VENV)/.installed: $(VENV)/.installed-demo
	@echo "[setup] installing the test tools (pytest, gradio, playwright, build, ...)"
	@$(PIP_INSTALL) -e ".[test]"
	@touch $@
	@echo "[setup] done: $(VENV) is ready for the tests"

test: setup
	$(BIN)/python -m pytest -q -rs

test-fast: setup
	$(BIN)/python -m pytest -q -rs -m "not slow"

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py

demo-quick: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py --quick
