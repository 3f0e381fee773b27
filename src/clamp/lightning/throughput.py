"""Training throughput as the run sees it: ``train/samples_per_s`` per epoch, on every logger.

An epoch's figure counts the samples of all processes (per-process batch x world size) from the
epoch's start to its last optimizer step, the device synchronised there: data loading, transfer, the
step and logging are inside, the end-of-epoch checkpoint and validation are not. Compared with a
model-only step benchmark (``scripts/gpu_check.py``) it shows how long the accelerator waits on data.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


class ThroughputLogger(L.Callback):
    """Log ``train/samples_per_s`` at the end of each training epoch (module docstring)."""

    def __init__(self) -> None:
        self._started: float | None = None
        self._last_step: float | None = None
        self._samples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._last_step, self._samples = time.perf_counter(), None, 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        images = batch.get("image") if isinstance(batch, dict) else None
        if images is not None:
            self._samples += int(images.shape[0]) * trainer.world_size
        self._last_step = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._started is None or self._last_step is None or not self._samples:
            return
        if pl_module.device.type == "cuda":
            # Steps are queued asynchronously: the epoch's work is done only when the device says so.
            torch.cuda.synchronize(pl_module.device)
            self._last_step = time.perf_counter()
        seconds = self._last_step - self._started
        if seconds > 0:
            # Every process estimates the whole run's rate from its own clock; the figure is their mean.
            pl_module.log("train/samples_per_s", self._samples / seconds, on_epoch=True, sync_dist=True)
