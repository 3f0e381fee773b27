"""Shared test fixtures. Everything here works offline; real-data fixtures skip when absent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

# Nothing in the test suite may wait on a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Under pytest-xdist (make test: one worker per core) each worker and the commands it starts use one
# thread, so that two workers do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared real-data fixtures (AP-10K / Animal-Pose minis and published id lists).

    Read in place from ``$CLAMP_FIXTURES`` or ``<repo>/../shared/data``; tests that need them are
    skipped with a reason on a user's clone that has no such folder.
    """
    path = Path(os.environ.get("CLAMP_FIXTURES", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "ap10k_mini" / "test_ap10k.json").is_file():
        pytest.skip(f"real-data fixtures not found at {path} (set CLAMP_FIXTURES to the shared/data folder)")
    return path


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name`` filled by ``build`` once per test session, shared by the pytest-xdist workers
    (their temporary folders have a common parent) so that two workers do not both pay for it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    done = folder.with_name(f"{name}.done")
    with FileLock(folder.with_name(f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic AP-10K (all paper families present) shared by the training tests (read-only)."""
    from clamp.synthetic import generate_synthetic

    return built_once(
        tmp_path_factory,
        "synthetic-ap10k",
        lambda root: generate_synthetic(root, seed=0, num_train=60, num_val=30, num_test=10, image_size=128),
    )


@pytest.fixture(scope="session")
def trained_run(synthetic_root, tmp_path_factory) -> Path:
    """One tiny CLAMP trained for an epoch on the synthetic data (read-only for tests): its run folder,
    with ``checkpoints/last.ckpt`` and ``best-epoch000.ckpt``. Shared so that the many tests that need a
    real checkpoint (eval, predict, export, security) pay for one training."""
    from clamp.train import train
    from tests.helpers import compose_train, fast_overrides

    def run_training(run: Path) -> None:
        overrides = fast_overrides(synthetic_root, run, "trainer.max_epochs=1", "trainer.limit_train_batches=6")
        train(compose_train(overrides))

    return built_once(tmp_path_factory, "trained-run", run_training)
