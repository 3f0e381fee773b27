"""LightningModule: trains a pose model with the Eq. 10 loss and evaluates OKS AP."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from clamp.checkpoint import RECORD_KEY, build_model, checkpoint_record, make_record, model_state_dict
from clamp.codec import decode_keypoints
from clamp.errors import ClampError
from clamp.evaluation.decode import flip_test
from clamp.evaluation.metric import KeypointAPMetric
from clamp.evaluation.multi import MultiDatasetAPMetric
from clamp.keypoints import KeypointSpec, get_keypoint_spec
from clamp.lightning.optim import parameter_groups
from clamp.losses import clamp_total_loss
from clamp.models import PoseModel, create_model

log = logging.getLogger(__name__)

NONFINITE_POLICIES = ("stop", "skip")
# The checkpoint entry holding the random-number-generator states for an exact resume.
_RNG_KEY = "clamp_rng"


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


class NonFiniteLossError(ClampError):
    """The training loss became NaN or infinite; the message says where and what was saved."""


class TooManyBadSamplesError(ClampError):
    """More samples than allowed could not be decoded; the message lists them."""


def _rng_states() -> dict[str, Any]:
    """Every random stream a training step can draw from, in types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class PoseEstimationModule(L.LightningModule):
    """Trains CLAMP (Eq. 10) or SimpleBaseline (L_pred only) and reports OKS AP.

    ``model`` is the Hydra ``model`` section (registry ``name``, ``pretrained``, ``keypoints``,
    ``overrides``) or an already built network. Checkpoints carry the network's rebuild record
    (:mod:`clamp.checkpoint`), so :meth:`from_checkpoint`, ``clamp.load_model`` and the Predictor
    rebuild exactly the trained architecture.
    """

    def __init__(
        self,
        model: Mapping[str, Any] | PoseModel,
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        evaluation: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "loss": dict(loss),
                "optimizer": dict(optimizer),
                "scheduler": dict(scheduler),
                "evaluation": dict(evaluation),
            }
        )
        provenance = dict(provenance or {})
        if isinstance(model, Mapping):
            provenance.setdefault("pretrained", model.get("pretrained"))
            model = create_model(
                model["name"],
                pretrained=model.get("pretrained"),
                keypoints=get_keypoint_spec(model["keypoints"]),
                **dict(model.get("overrides") or {}),
            )
        self.model = model
        self.provenance = provenance
        self.keypoint_spec: KeypointSpec = self.model.keypoint_spec
        self.is_clamp = getattr(self.model, "logit_scale", None) is not None
        if self.is_clamp:
            # Table 6 ablations: a switched-off branch gets no gradient, so freeze it (optimisers and
            # DDP then skip it instead of finding unused parameters).
            if not loss.get("use_spatial", True):
                self.model.spatial_head.requires_grad_(False)
            if not loss.get("use_feature", True):
                self.model.logit_scale.requires_grad_(False)
        if loss.get("on_nonfinite", "stop") not in NONFINITE_POLICIES:
            raise ClampError(f"loss.on_nonfinite={loss.get('on_nonfinite')!r}: choose one of {NONFINITE_POLICIES}")
        missing = [key for key in ("alpha_spatial", "alpha_feature") if loss.get(key) is None]
        if self.is_clamp and missing:
            raise ClampError(
                f"loss.{missing[0]} is not set: the config gives the official per-backbone value "
                "(conf/backbone/*.yaml); set a number"
            )
        self.alpha_spatial = loss.get("alpha_spatial") or 0.0
        self.alpha_feature = loss.get("alpha_feature") or 0.0
        self.val_metric: KeypointAPMetric | MultiDatasetAPMetric | None = None
        self.test_metric: KeypointAPMetric | MultiDatasetAPMetric | None = None
        self.last_evaluation: dict[str, Any] | None = None
        self.preview: dict[str, torch.Tensor] | None = None
        self.skipped: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        self.nonfinite_steps: list[int] = []
        self._rng_to_restore: Mapping[str, Any] | None = None
        self._compiled: Any = None

    # ---- speed.compile --------------------------------------------------------------------
    def compile_model(self, mode: str | None = None) -> None:
        """Run the network through ``torch.compile(model, mode=mode)`` in training and evaluation.

        The compiled callable is stored outside the registered modules (``object.__setattr__``), so
        ``state_dict()`` keys, checkpoints and the rebuild recipe stay those of the plain network; it
        shares the network's parameters, so optimisers, EMA and DDP see the same tensors.
        """
        object.__setattr__(self, "_compiled", torch.compile(self.model, mode=mode))

    def network(self, images: torch.Tensor) -> Any:
        """The network's forward: compiled when :meth:`compile_model` was called, else the plain module."""
        return (self.model if self._compiled is None else self._compiled)(images)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], source: str = "checkpoint") -> PoseEstimationModule:
        """Rebuild the module and its trained weights from a checkpoint read by
        :func:`clamp.checkpoint.read_checkpoint`, without the original backbone weight file."""
        record = checkpoint_record(checkpoint, source)
        model = build_model(record, model_state_dict(checkpoint, source), source)
        hparams = checkpoint.get("hyper_parameters") or {}
        missing = [key for key in ("loss", "optimizer", "scheduler", "evaluation") if key not in hparams]
        if missing:
            raise ClampError(f"{source} lacks the training settings {missing}; it was not written by clamp.train")
        return cls(
            model=model,
            provenance=record["provenance"],
            **{key: hparams[key] for key in ("loss", "optimizer", "scheduler", "evaluation")},
        )

    # ---- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "provenance"):
            self.provenance.update(datamodule.provenance())
        checkpoint[RECORD_KEY] = make_record(self.model, self.provenance)
        checkpoint[_RNG_KEY] = _rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get(_RNG_KEY)

    def on_train_start(self) -> None:
        # Restored here, after the model was built and the sanity check ran, right before the first
        # step of the resumed run: the next step draws exactly what the interrupted run would have.
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self.note_skipped("train", batch)
        if "image" not in batch:
            return None
        output = self.network(batch["image"])
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
            return self._nonfinite(terms, batch)
        for key, value in terms.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key == "loss", batch_size=batch["image"].shape[0])
        return terms["loss"]

    def _nonfinite(self, terms: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Stop with a message naming the step, the loss terms and the images; or skip the step."""
        where = (
            f"step {self.global_step} (epoch {self.current_epoch}): "
            + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            + f"; batch images {sorted(set(batch['image_id'].tolist()))}"
        )
        if self.hparams.loss.get("on_nonfinite", "stop") == "skip":
            self.nonfinite_steps.append(self.global_step)
            log.warning(
                "skipped a step with a non-finite loss at %s (%d skipped so far)", where, len(self.nonfinite_steps)
            )
            return None
        from clamp.lightning.checkpointing import latest_checkpoint_note

        raise NonFiniteLossError(
            f"non-finite loss at {where}. {latest_checkpoint_note(self.trainer)} Lower optimizer.lr, check "
            "these images, or pass loss.on_nonfinite=skip to skip such steps."
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # With on_nonfinite=skip a step whose gradients overflowed is skipped too: grads set to None make
        # AdamW leave those parameters (and their moments) untouched.
        if self.hparams.loss.get("on_nonfinite", "stop") != "skip":
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not all(torch.isfinite(g).all() for g in grads):
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self.nonfinite_steps.append(self.global_step)
            log.warning(
                "skipped a step with non-finite gradients at step %d (%d skipped so far)",
                self.global_step,
                len(self.nonfinite_steps),
            )

    def note_skipped(self, stage: str, batch: Mapping[str, Any]) -> None:
        """Count the samples of a batch that could not be decoded; stop beyond the data module's limit."""
        reasons = batch.get("skipped") or []
        if not reasons:
            return
        new = [r for r in reasons if r not in self.skipped[stage]]
        for reason in new:
            log.warning("skipped an unreadable %s sample: %s", stage, reason)
        self.skipped[stage].extend(new)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        limit = datamodule.bad_sample_limit(stage) if datamodule is not None else math.inf
        if len(self.skipped[stage]) > limit:
            from clamp.lightning.checkpointing import latest_checkpoint_note

            raise TooManyBadSamplesError(
                f"{len(self.skipped[stage])} {stage} samples could not be decoded, more than the "
                f"{limit} allowed (data.max_bad_fraction): {self.skipped[stage][:5]}. "
                f"{latest_checkpoint_note(self.trainer)} Fix or remove these images."
            )

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.hparams.optimizer
        groups = parameter_groups(self.model, opt["lr"], opt["weight_decay"], opt["backbone_lr_mult"])
        optimizer = torch.optim.AdamW(groups, lr=opt["lr"], betas=tuple(opt.get("betas", (0.9, 0.999))))
        sched = self.hparams.scheduler
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_step_factor(
                step,
                steps_per_epoch,
                sched["warmup_iters"],
                sched["warmup_ratio"],
                list(sched["milestones"]),
                sched["gamma"],
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- evaluation -----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self.trainer is not None else None
        if datamodule is None:
            return
        ev = self.hparams.evaluation
        kwargs = {
            "nms_threshold": ev.get("nms_threshold", 0.9),
            "keypoint_score_threshold": ev.get("score_threshold", 0.2),
        }
        if hasattr(datamodule, "member_specs"):  # several datasets in a union (clamp.lightning.multi)
            self._setup_multi_metrics(datamodule, stage, kwargs)
            return
        if stage in ("fit", "validate"):
            self.val_metric = KeypointAPMetric(self.keypoint_spec, datamodule.ground_truth("val"), **kwargs).to(
                self.device
            )
        if stage == "test":
            self.test_metric = KeypointAPMetric(
                self.keypoint_spec, datamodule.ground_truth("test"), results_path=ev.get("results_json"), **kwargs
            ).to(self.device)

    def _setup_multi_metrics(self, datamodule: Any, stage: str, kwargs: dict[str, Any]) -> None:
        """One metric per member dataset on its own keypoints, sigmas and ground truth."""
        union = datamodule.union
        if union.spec.to_dict() != self.keypoint_spec.to_dict():
            raise ClampError(
                f"the model predicts the '{self.keypoint_spec.name}' keypoints but the data is the union "
                f"'{union.name}'; set model.keypoints to data.keypoints"
            )
        results = self.hparams.evaluation.get("results_json")

        def metric(part: str, results_paths: dict[str, str] | None = None) -> MultiDatasetAPMetric:
            members = [(name, spec, datamodule.ground_truth(part, name)) for name, spec in datamodule.member_specs()]
            return MultiDatasetAPMetric(union, members, results_paths=results_paths, **kwargs).to(self.device)

        if stage in ("fit", "validate"):
            self.val_metric = metric("val")
        if stage == "test":
            paths = None
            if results:
                paths = {name: str(Path(results).with_suffix(f".{name}.json")) for name, _ in datamodule.member_specs()}
            self.test_metric = metric("test", paths)

    def predict_heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Keypoint heatmaps, averaged with the flipped image's when flip test is on."""
        ev = self.hparams.evaluation
        if ev.get("flip_test", True):
            return flip_test(
                lambda x: self.network(x).heatmaps,
                images,
                self.keypoint_spec.flip_index,
                shift=ev.get("shift_heatmap", True),
            )
        return self.network(images).heatmaps

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.note_skipped("val", batch)
        if "image" not in batch:
            return
        heatmaps = self.predict_heatmaps(batch["image"])
        if not torch.isfinite(heatmaps).all():
            from clamp.lightning.checkpointing import latest_checkpoint_note

            raise NonFiniteLossError(
                f"the model's heatmaps are not finite at validation after step {self.global_step} (batch images "
                f"{sorted(set(batch['image_id'].tolist()))}): training diverged. "
                f"{latest_checkpoint_note(self._trainer)} Lower optimizer.lr."
            )
        self.val_metric.update(heatmaps.float(), batch)
        if self.preview is None:
            self.preview = {
                "image": batch["image"].cpu(),
                "heatmaps": heatmaps.float().cpu(),
                "keypoints": batch["keypoints"].cpu(),
            }

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.note_skipped("test", batch)
        if "image" in batch:
            self.test_metric.update(self.predict_heatmaps(batch["image"]).float(), batch)

    def on_validation_epoch_start(self) -> None:
        self.preview = None

    def on_validation_epoch_end(self) -> None:
        self.last_evaluation = self._log_metric(self.val_metric, "val")

    def on_test_epoch_end(self) -> None:
        self.last_evaluation = self._log_metric(self.test_metric, "test")

    def preview_keypoints(self) -> np.ndarray | None:
        """The first validation batch's predicted keypoints in crop pixels (W&B previews)."""
        if self.preview is None:
            return None
        return np.asarray(decode_keypoints(self.preview["heatmaps"].numpy(), input_size=self.model.input_size))

    def _log_metric(self, metric: KeypointAPMetric | MultiDatasetAPMetric, prefix: str) -> dict[str, Any]:
        """Log the OKS stats; return the full report (with per-species and per-family AP)."""
        stats = metric.compute()
        metric.reset()
        # Every rank holds the same gathered numbers; sync_dist (a mean of equal values) keeps Lightning's
        # distributed bookkeeping consistent without changing them.
        for key, value in stats.items():
            self.log(f"{prefix}/{key}", float(value), prog_bar=key == "AP", sync_dist=True)
        report = dict(metric.last_report)
        report["unreadable_samples"] = list(self.skipped[prefix])
        return report
