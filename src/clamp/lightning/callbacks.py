"""Callbacks: a progress report that also works in log files, and W&B evaluation reports."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import WandbLogger

from clamp.visualization import denormalize_image, draw_pose, side_by_side


class LineProgressBar(ProgressBar):
    """One line per training epoch (and per evaluation), for output that is not a terminal.

    Rich's live bar draws nothing until the end when stdout is a file (``make demo > log``); this
    prints, e.g. ``epoch 3/8  25 steps  loss 0.00123  val/AP 0.521  4.2 s``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        if self._enabled:
            print(text, file=sys.stdout, flush=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", f"step {trainer.global_step}"]
        for key in ("train/loss", "val/AP"):
            if key in metrics:
                parts.append(f"{key.split('/')[-1] if key == 'train/loss' else key} {float(metrics[key]):.4g}")
        parts.append(f"{time.monotonic() - self._started:.1f} s")
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
            if isinstance(logger, WandbLogger):
                logger.experiment.log(
                    {
                        **self.tables(pl_module.last_evaluation, wandb),
                        **self.images(pl_module, wandb),
                        "trainer/global_step": trainer.global_step,
                    }
                )

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
