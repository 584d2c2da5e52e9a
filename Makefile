# Two commands on a fresh clone:  `make demo`  and  `make test`  (`make test-all`: slow tests too).
# `make test` first runs `make system`: the Debian packages the tests need beyond Python (.ci/system-packages: Xvfb
# and the Qt/OpenGL libraries of the napari widget tests), installed with apt-get when missing (as root or with
# passwordless sudo), else it stops before any test with one line naming the command to run. Not on Debian:
# make test SYSTEM_CHECK=skip once Xvfb and Qt's libraries are installed otherwise.
# TORCH pins the PyTorch build: 2.13.0 is the CPU build on this project's machines (an unpinned
# torch pulls a multi-GB CUDA build). On a CUDA machine: make setup TORCH=torch
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
SYSTEM_CHECK ?=
BIN := $(VENV)/bin

.PHONY: setup system demo test test-all lint clean-venv

$(BIN)/.biounet-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,onnx,export,bioimageio,napari,serve]'
	touch $@

setup: $(BIN)/.biounet-installed

# the Debian packages of .ci/system-packages (the script is .ci/run's too); `make demo` needs none of them
system:
	@BIOUNET_SYSTEM_CHECK="$(SYSTEM_CHECK)" bash .ci/system-packages.sh

demo: setup
	$(BIN)/biounet demo

# the fast suite (a few minutes); `make test-all` adds the slow end-to-end tests, as CI runs them
test: system setup
	$(BIN)/python -m pytest -q -m "not slow"

test-all: system setup
	$(BIN)/python -m pytest -q

# ruff (lint rules, and `ruff format` applied: --check fails on unformatted code) and mypy, as CI runs them
lint: setup
	$(BIN)/ruff check src tests benchmarks experiments tools docs
	$(BIN)/ruff format --check src tests benchmarks experiments tools docs
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
