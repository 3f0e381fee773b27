# `make demo` and `make test` work on a fresh clone: each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp

# Offline by default: nothing in the demo or the tests downloads weights or waits on W&B.
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: install demo test test-slow test-slurm lint lock clean

install: $(STAMP)

# Idempotent: creates the venv only if missing, reinstalls only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade "pip>=23.2"
	PYTHONWARNINGS=ignore $(PY) -m pip install -qq -c constraints.txt -e '.[test,slurm,onnx,dev,sleap]'
	@touch $@

# The synthetic dataset is generated on first use and cached in data/synthetic/.
demo: install
	$(PY) -m clamp.train +experiment=demo

# Two pytest-xdist workers (the CPU count of the CI machines), each taking whole test files so that a
# module's fixtures are built once.
test: install
	WANDB_MODE=disabled $(PY) -m pytest -n 2 --dist loadfile

test-slow: install
	WANDB_MODE=disabled $(PY) -m pytest -m slow

# A real single-node SLURM cluster on this machine (needs root; installs slurm-wlm, munge, slurmdbd and
# MariaDB when missing), the SLURM tests against it through hydra/launcher=slurm, then the cluster stops.
test-slurm: install
	scripts/local_slurm.sh start
	WANDB_MODE=disabled $(PY) -m pytest -m slow tests/test_slurm_cluster.py tests/test_slurm_training.py; \
	status=$$?; scripts/local_slurm.sh stop; exit $$status

# ruff (lint and format check, as the pre-commit hook) and mypy on the typed core (pyproject.toml); CI runs it.
lint: install
	$(VENV)/bin/ruff check src tests scripts notebooks
	$(VENV)/bin/ruff format --check src tests scripts
	$(VENV)/bin/mypy

# Re-pin the tested set after a dependency change (run on a CPU machine like CI's).
lock: install
	@{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean:
	rm -rf outputs multirun .pytest_cache
