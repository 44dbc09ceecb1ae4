# The README's two commands. Each installs what it needs first, so a fresh machine needs nothing else.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: train demo test install install-dev bench

install:
	$(PIP) -e .

install-dev:
	$(PIP) -e '.[dev]'

## main job: train ResNet-18 from scratch on the brain-MRI data (2-core CPU: under 10 minutes)
train: install
	$(PYTHON) -m resnet_scratch train --config experiments/configs/main_cpu.toml --name main-$$(date +%Y%m%d-%H%M%S)

## every model's layer table, parameters and multiply-adds
demo: install
	$(PYTHON) -m resnet_scratch demo

## the whole test suite (what CI runs)
test: install-dev
	$(PYTHON) -m pytest -q

## throughput of our models against torchvision's (not a test; see docs/benchmarks.md)
bench: install-dev
	$(PYTHON) benchmarks/models.py
