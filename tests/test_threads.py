"""Threads on a shared machine: the training process leaves the cores its data workers use, and each
worker runs every library on one thread (``speed.cpu_threads``, ``init_loader_worker``)."""

from __future__ import annotations

import cv2
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from clamp.errors import ClampError
from clamp.lightning.datamodule import init_loader_worker
from clamp.train import training_threads


class _ThreadCounts(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int]:
        return cv2.getNumThreads(), torch.get_num_threads()


def test_auto_leaves_the_cores_of_the_data_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert training_threads("auto", "cpu", num_workers=2, cores=2) == 1
    assert training_threads("auto", "cpu", num_workers=4, cores=16) == 12
    assert training_threads("auto", "cpu", num_workers=0, cores=8) == 8
    assert training_threads("auto", "cpu", num_workers=32, cores=8) == 1


def test_auto_leaves_accelerators_and_a_users_omp_setting_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert training_threads("auto", "gpu", num_workers=4, cores=16) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert training_threads("auto", "cpu", num_workers=2, cores=2) is None


def test_a_number_is_taken_and_nonsense_refused() -> None:
    assert training_threads(3, "cpu", num_workers=2, cores=2) == 3
    for bad in (0, -1, "four", True):
        with pytest.raises(ClampError, match="speed.cpu_threads"):
            training_threads(bad, "cpu", num_workers=2, cores=2)


def test_loader_workers_run_opencv_and_torch_on_one_thread() -> None:
    loader = DataLoader(_ThreadCounts(), batch_size=None, num_workers=1, worker_init_fn=init_loader_worker)
    assert [tuple(map(int, counts)) for counts in loader] == [(1, 1), (1, 1)]
