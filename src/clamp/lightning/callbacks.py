"""Callbacks: a progress report (a live bar on a terminal, a line per epoch in log files) and W&B evaluation
reports."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from clamp.lightning.checkpointing import epoch_label
from clamp.lightning.loggers import SignalSafeWandbLogger
from clamp.visualization import denormalize_image, draw_pose, side_by_side


class EpochProgressBar(RichProgressBar):
    """Rich's live bar, counting epochs as the epoch lines do (``Epoch 1/4`` for the first of four, not
    ``0/3``) and without the logger's version number (``v_num``), which says nothing about the run."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = epoch_label(self.trainer, current_epoch).capitalize()
        # As Rich's own: padded to the validation bar's label, so that the two do not flicker.
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class LineProgressBar(ProgressBar):
    """One line per training epoch (and per evaluation), for output that is not a terminal.

    Rich's live bar draws nothing until the end when stdout is a file (``make demo > log``); this
    prints, e.g. ``epoch 3/8  step 75  loss 0.00123  val/AP 0.521  4.2 s``: ``val/AP`` only for an
    epoch that was validated, and for an epoch resumed in its middle the time since the resume.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._started = 0.0
        self._resumed_at: int | None = None  # the global step a run resumed in the middle of an epoch began at
        self._validated = False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        if self._enabled:
            print(text, file=sys.stdout, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed in the middle of an epoch continues it without on_train_epoch_start: time it from here.
        self._started = time.monotonic()
        self._resumed_at = trainer.global_step or None
        self._validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()
        self._resumed_at = None
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        parts = [epoch_label(trainer, trainer.current_epoch), f"step {trainer.global_step}"]
        if "train/loss" in metrics:
            parts.append(f"loss {float(metrics['train/loss']):.4g}")
        # callback_metrics keeps the last validation's value through the epochs that skip validation.
        if self._validated and "val/AP" in metrics:
            parts.append(f"val/AP {float(metrics['val/AP']):.4g}")
        elapsed = f"{time.monotonic() - self._started:.1f} s"
        if self._resumed_at is not None:
            elapsed += f" since the resume at step {self._resumed_at}"
        parts.append(elapsed)
        self._print("  ".join(parts))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # One test loader per dataset of a data=multi run.
        self._print(f"evaluated {sum(trainer.num_test_batches)} test batches")


class WandbEvaluationLogger(L.Callback):
    """After each evaluation, log the per-species AP table and ``num_images`` crops with the
    predicted skeleton (left) beside the ground truth (right)."""

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = num_images

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or pl_module.last_evaluation is None:
            return
        import wandb

        for logger in trainer.loggers:
            if isinstance(logger, SignalSafeWandbLogger) and not logger.service_lost:
                report = {
                    **self.tables(pl_module.last_evaluation, wandb),
                    **self.images(pl_module, wandb),
                    "trainer/global_step": trainer.global_step,
                }
                logger.guard(lambda: logger.experiment.log(report))  # noqa: B023 (called at once)

    @staticmethod
    def tables(evaluation: dict[str, Any], wandb: Any) -> dict[str, Any]:
        species = wandb.Table(
            columns=["species", "family", "AP", "AR"],
            data=[[row["name"], row["family"], row["AP"], row["AR"]] for row in evaluation["per_species"].values()],
        )
        families = wandb.Table(
            columns=["family", "species", "AP", "AR"],
            data=[
                [name, row["num_species"], row["AP"], row["AR"]]
                for name, row in sorted(evaluation["per_family"].items())
            ],
        )
        return {"val/per_species_AP": species, "val/per_family_AP": families}

    def images(self, pl_module: L.LightningModule, wandb: Any) -> dict[str, Any]:
        predicted = pl_module.preview_keypoints()
        if predicted is None or self.num_images <= 0:
            return {}
        spec = pl_module.keypoint_spec
        preview = pl_module.preview
        panels = []
        for i in range(min(self.num_images, len(predicted))):
            crop = denormalize_image(preview["image"][i])
            panels.append(
                wandb.Image(
                    side_by_side(
                        draw_pose(crop, np.asarray(predicted[i]), spec),
                        draw_pose(crop, preview["keypoints"][i].numpy(), spec, color=(64, 200, 64)),
                    ),
                    caption="prediction | ground truth",
                )
            )
        return {"val/predictions": panels}
