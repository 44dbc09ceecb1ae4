# The README's two commands. Each installs what it needs first, so a fresh machine needs nothing else.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test install install-dev bench

install:
	$(PIP) -e .

install-dev:
	$(PIP) -e '.[dev]'

## main job: build every model and print its layer table, parameters and multiply-adds
demo: install
	$(PYTHON) -m resnet_scratch demo

## the whole test suite (what CI runs)
test: install-dev
	$(PYTHON) -m pytest -q

## throughput of our models against torchvision's (not a test; see docs/benchmarks.md)
bench: install-dev
	$(PYTHON) benchmarks/models.py
