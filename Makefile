# Two commands on a fresh clone:  `make demo`  and  `make test`  (`make test-all`: slow tests too).
# TORCH pins the PyTorch build: 2.13.0 is the CPU build on this project's machines (an unpinned
# torch pulls a multi-GB CUDA build). On a CUDA machine: make setup TORCH=torch
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test test-all lint clean-venv

$(BIN)/.biounet-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,onnx,export,bioimageio,napari]'
	touch $@

setup: $(BIN)/.biounet-installed

demo: setup
	$(BIN)/biounet demo

# the fast suite (a few minutes); `make test-all` adds the slow end-to-end tests, as CI runs them
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -q

# ruff (lint rules, and `ruff format` applied: --check fails on unformatted code) and mypy, as CI runs them
lint: setup
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
