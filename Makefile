# The README's two commands. Each installs what it needs first, so a fresh machine needs nothing else.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: train demo test lint format install install-dev bench

install:
	$(PIP) -e .

install-dev:
	$(PIP) -e '.[dev]'

## main job: the CPU recipe, ResNet-18 from scratch on the brain-MRI data (time and accuracy: README.md)
train: install
	$(PYTHON) -m resnet_scratch train --config main_cpu --name main-$$(date +%Y%m%d-%H%M%S)

## every model's layer table, parameters and multiply-adds
demo: install
	$(PYTHON) -m resnet_scratch demo

## the formatter and linter, then the whole test suite (what CI runs)
test: install-dev lint
	$(PYTHON) -m pytest -q

## ruff: one format and one line length (120) everywhere; `make format` applies them
lint: install-dev
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

format: install-dev
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

## throughput of our models against torchvision's (not a test; see docs/benchmarks.md)
bench: install-dev
	$(PYTHON) benchmarks/models.py
