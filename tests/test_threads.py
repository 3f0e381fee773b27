"""Threads on a shared machine: the commands' OpenMP threads wait passively, each data worker runs
OpenCV and PyTorch on one thread, and ``speed.cpu_threads`` sets the training process's threads."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from clamp.errors import ClampError
from clamp.lightning.datamodule import init_loader_worker
from clamp.train import training_threads
from tests.helpers import OFFLINE_ENV, REPO_ROOT


class _ThreadCounts(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int]:
        return cv2.getNumThreads(), torch.get_num_threads()


def _fresh_python(code: str, **env: str) -> str:
    clean = {k: v for k, v in OFFLINE_ENV.items()}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_commands_make_openmp_wait_passively_before_torch_is_imported() -> None:
    code = "import sys, os, clamp.train; print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    assert _fresh_python(code) == "False PASSIVE"
    assert _fresh_python(code, OMP_WAIT_POLICY="ACTIVE") == "False ACTIVE"  # the user's setting stands


def test_cpu_threads_is_pytorchs_default_or_a_number_and_nonsense_is_refused() -> None:
    assert training_threads(None) is None
    assert training_threads(3) == 3
    for bad in (0, -1, "four", True):
        with pytest.raises(ClampError, match="speed.cpu_threads"):
            training_threads(bad)


def test_loader_workers_run_opencv_and_torch_on_one_thread() -> None:
    loader = DataLoader(_ThreadCounts(), batch_size=None, num_workers=1, worker_init_fn=init_loader_worker)
    assert [tuple(map(int, counts)) for counts in loader] == [(1, 1), (1, 1)]
