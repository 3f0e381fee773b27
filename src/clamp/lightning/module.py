"""LightningModule: trains a pose model with the Eq. 10 loss and evaluates OKS AP."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch

from clamp.data.keypoints import KeypointSpec, get_keypoint_spec
from clamp.evaluation.decode import flip_test
from clamp.evaluation.metric import KeypointAPMetric
from clamp.losses import clamp_total_loss
from clamp.models import create_model


def warmup_step_factor(
    step: int, steps_per_epoch: int, warmup_iters: int, warmup_ratio: float, milestones: list[int], gamma: float
) -> float:
    """Learning-rate factor at an optimizer step: mmcv's linear warm-up from ``warmup_ratio``,
    then ``gamma`` at every milestone epoch passed (official: x0.1 at epochs 170 and 200)."""
    epoch = step // max(1, steps_per_epoch)
    factor = gamma ** sum(epoch >= m for m in milestones)
    if step < warmup_iters:
        factor *= 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)
    return factor


class MissingCheckpointError(FileNotFoundError):
    """A checkpoint path that does not exist."""


class PoseEstimationModule(L.LightningModule):
    """Trains CLAMP (Eq. 10) or SimpleBaseline (L_pred only) and reports OKS AP.

    Everything needed to rebuild the model (registry name, overrides and the full keypoint
    spec) is saved in the checkpoint's hyper-parameters.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        evaluation: Mapping[str, Any],
    ) -> None:
        super().__init__()
        model = dict(model)
        model["keypoints"] = get_keypoint_spec(model["keypoints"]).to_dict()
        model["overrides"] = dict(model.get("overrides") or {})
        self.save_hyperparameters({"model": model, "loss": dict(loss), "optimizer": dict(optimizer),
                                   "scheduler": dict(scheduler), "evaluation": dict(evaluation)})
        self.model = create_model(model["name"], pretrained=model.get("pretrained"),
                                  keypoints=model["keypoints"], **model["overrides"])
        self.keypoint_spec: KeypointSpec = self.model.keypoint_spec
        self.is_clamp = getattr(self.model, "logit_scale", None) is not None
        if self.is_clamp:
            # Table 6 ablations: a switched-off branch gets no gradient, so freeze it (optimisers and
            # DDP then skip it instead of finding unused parameters).
            if not loss.get("use_spatial", True):
                self.model.spatial_head.requires_grad_(False)
            if not loss.get("use_feature", True):
                self.model.logit_scale.requires_grad_(False)
        defaults = self.model.default_loss_weights
        self.alpha_spatial = defaults["alpha_spatial"] if loss.get("alpha_spatial") is None else loss["alpha_spatial"]
        self.alpha_feature = defaults["alpha_feature"] if loss.get("alpha_feature") is None else loss["alpha_feature"]
        self.val_metric: KeypointAPMetric | None = None
        self.test_metric: KeypointAPMetric | None = None
        self.last_evaluation: dict[str, Any] | None = None
        self.preview: dict[str, torch.Tensor] | None = None

    @staticmethod
    def read_checkpoint(path: str | Path) -> dict[str, Any]:
        """The checkpoint file's contents (weights, hyper-parameters, data module settings), on the CPU."""
        if not Path(path).is_file():
            raise MissingCheckpointError(f"checkpoint not found: {path} (pass ckpt=/path/to/last.ckpt or best-*.ckpt)")
        return torch.load(path, map_location="cpu", weights_only=False)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | Mapping[str, Any]) -> "PoseEstimationModule":
        """Rebuild the module and its trained weights from a checkpoint path or its loaded contents,
        without needing the original CLIP weight file."""
        if not isinstance(checkpoint, Mapping):
            checkpoint = cls.read_checkpoint(checkpoint)
        hparams = checkpoint["hyper_parameters"]
        module = cls(**{**hparams, "model": {**hparams["model"], "pretrained": None}})
        module.load_state_dict(checkpoint["state_dict"])
        return module

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        output = self.model(batch["image"])
        cfg = self.hparams.loss
        terms = clamp_total_loss(
            output,
            batch,
            alpha_spatial=self.alpha_spatial,
            alpha_feature=self.alpha_feature,
            use_spatial=self.is_clamp and cfg.get("use_spatial", True),
            use_feature=self.is_clamp and cfg.get("use_feature", True),
            feature_sampling=cfg.get("feature_sampling", "nearest"),
            logit_scale=self.model.logit_scale if self.is_clamp else None,
        )
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"non-finite loss at step {self.global_step}: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                + ". Lower optimizer.lr or check the data; the last checkpoint is untouched."
            )
        for key, value in terms.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key == "loss", batch_size=batch["image"].shape[0])
        return terms["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.hparams.optimizer
        groups = self.model.parameter_groups(opt["lr"], opt["weight_decay"], opt.get("backbone_lr_mult"))
        optimizer = torch.optim.AdamW(groups, lr=opt["lr"], betas=tuple(opt.get("betas", (0.9, 0.999))))
        sched = self.hparams.scheduler
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_step_factor(step, steps_per_epoch, sched["warmup_iters"], sched["warmup_ratio"],
                                            list(sched["milestones"]), sched["gamma"]),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- evaluation -----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self.trainer is not None else None
        if datamodule is None:
            return
        ev = self.hparams.evaluation
        kwargs = {"nms_threshold": ev.get("nms_threshold", 0.9),
                  "keypoint_score_threshold": ev.get("score_threshold", 0.2)}
        if stage in ("fit", "validate"):
            self.val_metric = KeypointAPMetric(self.keypoint_spec, datamodule.coco_gt("val"), **kwargs).to(self.device)
        if stage == "test":
            self.test_metric = KeypointAPMetric(self.keypoint_spec, datamodule.coco_gt("test"),
                                                results_path=ev.get("results_json"), **kwargs).to(self.device)

    def predict_heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Keypoint heatmaps, averaged with the flipped image's when flip test is on."""
        ev = self.hparams.evaluation
        if ev.get("flip_test", True):
            return flip_test(lambda x: self.model(x).heatmaps, images, self.keypoint_spec.flip_index,
                             shift=ev.get("shift_heatmap", True))
        return self.model(images).heatmaps

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        heatmaps = self.predict_heatmaps(batch["image"])
        self.val_metric.update(heatmaps.float(), batch)
        if batch_idx == 0:
            self.preview = {"image": batch["image"].cpu(), "heatmaps": heatmaps.float().cpu(),
                            "keypoints": batch["keypoints"].cpu()}

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.test_metric.update(self.predict_heatmaps(batch["image"]).float(), batch)

    def on_validation_epoch_end(self) -> None:
        self.last_evaluation = self._log_metric(self.val_metric, "val")

    def on_test_epoch_end(self) -> None:
        self.last_evaluation = self._log_metric(self.test_metric, "test")

    def _log_metric(self, metric: KeypointAPMetric, prefix: str) -> dict[str, Any]:
        """Log the OKS stats; return the full report (with per-species and per-family AP)."""
        stats = metric.compute()
        metric.reset()
        # Every rank holds the same gathered numbers, so no further reduction is needed.
        for key, value in stats.items():
            self.log(f"{prefix}/{key}", float(value), prog_bar=key == "AP", sync_dist=False)
        return metric.last_report
