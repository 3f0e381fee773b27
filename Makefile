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

.PHONY: install demo test test-slow test-slurm lint lock clean gpu-wheels gpu-check

install: $(STAMP)

# Idempotent: creates the venv only if missing, reinstalls only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade "pip>=23.2"
	PYTHONWARNINGS=ignore $(PY) -m pip install -qq -c constraints.txt -e '.[test,slurm,optuna,onnx,dev,sleap,app]'
	@touch $@

# The synthetic dataset is generated on first use and cached in data/synthetic/.
demo: install
	$(PY) -m clamp.train +experiment=demo

# Two pytest-xdist workers (the CPU count of the CI machines), each taking whole test files so that a
# module's fixtures are built once.
# The web demo's browser test drives Debian's Chromium: installed first when missing (as root, about 40 s).
test: install
	@scripts/install_chromium.sh
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

# The GPU check (scripts/gpu_check.py) on a machine that has torch, lightning, torchmetrics, timm, OpenCV
# and Pillow but not the rest (the lent GPU machines: Python 3.12, no network). `make gpu-wheels` (here,
# online) downloads exactly the missing packages, at the versions of constraints.txt, as cp312 manylinux
# wheels into .whl/ (antlr4's runtime has no wheel on PyPI: built here, pure Python); scripts/gpu_check.sh
# installs them there. W&B and submitit are left out: the check logs to CSV and runs no SLURM job.
GPU_WHEELS := hydra-core omegaconf open_clip_torch ftfy wcwidth pycocotools albumentations albucore \
	pydantic pydantic_core annotated-types typing-inspection simsimd stringzilla
GPU_PLATFORMS := $(foreach n,2_28 2_27 2_24 2_17,--platform manylinux_$(n)_x86_64) --platform manylinux2014_x86_64
gpu-wheels:
	@mkdir -p .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_PLATFORMS) -c constraints.txt -d .whl $(GPU_WHEELS)
	$(PYTHON) -m pip wheel -q --no-deps -c constraints.txt -w .whl antlr4-python3-runtime
	@ls .whl

gpu-check:
	scripts/gpu_check.sh --out gpu_check

# Re-pin the tested set after a dependency change (run on a CPU machine like CI's).
lock: install
	@{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean:
	rm -rf outputs multirun .pytest_cache
