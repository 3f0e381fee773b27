"""Callbacks: W&B evaluation reports (per-species AP table, predictions beside ground truth)."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from clamp.evaluation.decode import decode_heatmaps
from clamp.visualization import denormalize_image, draw_pose, side_by_side


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
                logger.experiment.log({**self.tables(pl_module.last_evaluation, wandb),
                                       **self.images(pl_module, wandb), "trainer/global_step": trainer.global_step})

    @staticmethod
    def tables(evaluation: dict[str, Any], wandb: Any) -> dict[str, Any]:
        species = wandb.Table(columns=["species", "family", "AP", "AR"], data=[
            [row["name"], row["family"], row["AP"], row["AR"]] for row in evaluation["per_species"].values()])
        families = wandb.Table(columns=["family", "species", "AP", "AR"], data=[
            [name, row["num_species"], row["AP"], row["AR"]] for name, row in sorted(evaluation["per_family"].items())])
        return {"val/per_species_AP": species, "val/per_family_AP": families}

    def images(self, pl_module: L.LightningModule, wandb: Any) -> dict[str, Any]:
        preview = pl_module.preview
        if not preview or self.num_images <= 0:
            return {}
        spec = pl_module.keypoint_spec
        heatmaps = preview["heatmaps"][: self.num_images]
        coords, scores = decode_heatmaps(heatmaps)
        stride = preview["image"].shape[-1] / heatmaps.shape[-1]
        panels = []
        for i in range(heatmaps.shape[0]):
            crop = denormalize_image(preview["image"][i])
            predicted = np.concatenate([np.asarray(coords[i]) * stride, np.asarray(scores[i])[:, None]], axis=1)
            panels.append(wandb.Image(side_by_side(draw_pose(crop, predicted, spec),
                                                   draw_pose(crop, preview["keypoints"][i].numpy(), spec,
                                                             color=(64, 200, 64))),
                                      caption="prediction | ground truth"))
        return {"val/predictions": panels}
