# Two commands on a fresh machine with only Python:
#   make demo   - the example experiment with an init preset, printing the init report
#   make test   - the whole test suite
# Both create .venv and install the project the first time.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Strict editable mode: Hydra cannot see plugin config dirs through the default
# PEP 660 import hook (Hydra issue 2359). Strict mode links files, so re-link
# when a package file is added.
SOURCES := pyproject.toml constraints.txt $(shell find hydra_init hydra_plugins conf -name '*.py' -o -name '*.yaml' 2>/dev/null)
INIT ?= kaiming_conv

.PHONY: demo test lint bench sweep probe-pictures clean

$(STAMP): $(SOURCES)
	$(PYTHON) scripts/install.py $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	cd examples && ../$(BIN)/python train.py init=$(INIT) hydra.verbose=hydra_init  # the report table is at DEBUG

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/python -m ruff check .

# The optional `bench` extra (mmengine, pinned in constraints.txt) adds the mmengine
# column; without it (offline) the column says "not installed".
bench: $(STAMP)
	-$(BIN)/python -m pip install -q -c constraints.txt "mmengine>=0.10" 2>/dev/null
	$(BIN)/python benchmarks/run.py

# Why init matters: 6 init settings x 3 seeds of a 20-layer plain ReLU net on digits, in parallel
# jobs; writes the sweep table and pictures to multirun/why_init (see docs/why_init.md)
sweep: $(STAMP)
	$(BIN)/python examples/why_init/sweep.py --launcher joblib --out multirun/why_init

# The pictures of docs/probe.md: probes of the why-init net, a sweep's overlay, a width sweep's
# coordinate check (no training; about a minute)
probe-pictures: $(STAMP)
	$(BIN)/python scripts/probe_pictures.py

clean:
	rm -rf $(VENV) build *.egg-info outputs multirun
