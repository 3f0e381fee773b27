"""OKS keypoint AP as a torchmetrics ``Metric`` that gives the same numbers on 1 or N processes.

``update`` decodes each batch's (flip-averaged) heatmaps to image coordinates and appends one row
per instance to "cat" list states; torchmetrics all-gathers them before ``compute``. ``compute``
then removes the duplicates that ``DistributedSampler`` pads in (by ``instance_id``), puts the
instances in a canonical order (image id, instance id), rescores, runs per-image OKS-NMS and
evaluates with :func:`clamp.evaluation.oks.evaluate_keypoints`. Since the post-processing only
sees the de-duplicated, sorted set, the world size cannot change the result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from clamp.codec import decode_keypoints
from clamp.evaluation.oks import STAT_NAMES, evaluate_keypoints
from clamp.evaluation.postprocess import (
    KEYPOINT_SCORE_THRESHOLD,
    OKS_NMS_THRESHOLD,
    keypoint_results,
    nms_by_image,
    to_coco_results,
)
from clamp.keypoints import KeypointSpec, get_keypoint_spec

logger = logging.getLogger(__name__)

GTSource = Mapping[str, Any] | str | Path | Callable[[], Mapping[str, Any]]
_BATCH_KEYS = ("center", "scale", "image_id", "instance_id", "category_id", "bbox_score")


class KeypointAPMetric(Metric):
    """COCO OKS AP (AP, AP50, AP75, APM, APL, AR, ...) of heatmap predictions on GT-box crops.

    Args:
        keypoint_spec: the dataset's :class:`KeypointSpec` (or its name / dict); gives the sigmas.
        gt: the COCO GT dict, a path to its JSON, or a zero-argument callable returning the dict
            (resolved at every ``compute``); the annotation file's own records of the evaluated
            images (``CocoKeypoints.ground_truth``), so ignored GT counts as the official evaluator does.
        results_path: if set, ``compute`` writes the COCO results list there (rank 0 only), so
            ``python -m clamp.evaluation.oks`` can re-check the numbers.
        keypoint_score_threshold: rescoring threshold (official 0.2).
        nms_threshold: OKS-NMS threshold (official 0.9); ``None`` disables NMS.
        family_of: category id -> family for the per-family breakdown (default: supercategory).
        **kwargs: passed to ``torchmetrics.Metric`` (e.g. ``process_group``, ``dist_sync_fn``).

    ``compute`` returns {stat: float64 scalar tensor} for the ten COCO stats; the full report with
    ``per_species`` and ``per_family`` is kept in :attr:`last_report`.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        keypoint_spec: KeypointSpec | str | Mapping[str, Any],
        gt: GTSource,
        *,
        results_path: str | Path | None = None,
        keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
        nms_threshold: float | None = OKS_NMS_THRESHOLD,
        family_of: Mapping[int, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.keypoint_spec = get_keypoint_spec(keypoint_spec)
        self.gt = gt
        self.results_path = None if results_path is None else Path(results_path)
        self.keypoint_score_threshold = keypoint_score_threshold
        self.nms_threshold = nms_threshold
        self.family_of = family_of
        self.last_report: dict[str, Any] | None = None
        for name in ("image_id", "category_id", "instance_id", "keypoints", "area", "score"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, heatmaps: Tensor, batch: Mapping[str, Any]) -> None:
        """Decode (B, K, Hh, Wh) heatmaps of one batch and store its B instance predictions.

        ``batch`` is the collated sample dict; it needs ``center`` and ``scale`` (B, 2), and
        ``image_id``, ``instance_id``, ``category_id``, ``bbox_score`` (B,). Crops must be
        un-rotated (``rotation`` 0), as at test time.
        """
        missing = [k for k in _BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"KeypointAPMetric.update: batch lacks {missing}; pass the collated sample dict")
        k = self.keypoint_spec.num_keypoints
        if heatmaps.ndim != 4 or heatmaps.shape[1] != k:
            raise ValueError(
                f"KeypointAPMetric.update: expected heatmaps (B, {k}, H, W) for '{self.keypoint_spec.name}', "
                f"got shape {tuple(heatmaps.shape)}"
            )
        rotation = batch.get("rotation")
        if rotation is not None and bool(torch.as_tensor(rotation).ne(0).any()):
            raise ValueError("KeypointAPMetric.update: evaluation crops must not be rotated (rotation != 0)")
        b = heatmaps.shape[0]
        device = heatmaps.device

        def column(key: str, dtype: torch.dtype) -> Tensor:
            value = torch.as_tensor(batch[key], dtype=dtype, device=device).reshape(b, -1)
            return value.squeeze(-1) if value.shape[-1] == 1 else value

        center, scale = column("center", torch.float32), column("scale", torch.float32)
        self.keypoints.append(decode_keypoints(heatmaps.detach(), center, scale))
        self.area.append(scale[:, 0] * scale[:, 1])
        self.score.append(column("bbox_score", torch.float32))
        self.image_id.append(column("image_id", torch.int64))
        self.category_id.append(column("category_id", torch.int64))
        self.instance_id.append(column("instance_id", torch.int64))

    def _gathered(self, name: str) -> np.ndarray:
        return dim_zero_cat(getattr(self, name)).detach().cpu().numpy()

    def coco_results(self) -> list[dict[str, Any]]:
        """The de-duplicated, rescored, OKS-NMS-filtered predictions in COCO results format.

        Reads the states as they are: this process's own predictions, or all processes' inside
        ``compute`` (after torchmetrics' all-gather).
        """
        if isinstance(self.image_id, list) and not self.image_id:
            return []
        instance_id = self._gathered("instance_id").astype(np.int64)
        image_id = self._gathered("image_id").astype(np.int64)
        # First occurrence of each instance: DistributedSampler repeats samples to even out ranks.
        _, first = np.unique(instance_id, return_index=True)
        order = first[np.lexsort((instance_id[first], image_id[first]))]
        entries = keypoint_results(
            self._gathered("keypoints")[order],
            image_id[order],
            self._gathered("category_id").astype(np.int64)[order],
            self._gathered("area")[order],
            self._gathered("score")[order],
            instance_id[order],
            threshold=self.keypoint_score_threshold,
        )
        if self.nms_threshold is not None:
            entries = nms_by_image(entries, self.keypoint_spec.sigmas, self.nms_threshold)
        return to_coco_results(entries)

    def compute(self) -> dict[str, Tensor]:
        """Evaluate all gathered predictions; see the class docstring for the return value."""
        results = self.coco_results()
        if self.results_path is not None and (
            not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0
        ):
            self.results_path.parent.mkdir(parents=True, exist_ok=True)
            self.results_path.write_text(json.dumps(results))
            logger.info("wrote %d keypoint results to %s", len(results), self.results_path)
        gt = self.gt() if callable(self.gt) else self.gt
        sigmas = self.keypoint_spec.sigmas
        self.last_report = evaluate_keypoints(gt, results, sigmas, family_of=self.family_of)
        # float64 on the CPU keeps pycocotools' numbers bit-exact (and works for every accelerator).
        return {k: torch.tensor(self.last_report[k], dtype=torch.float64) for k in STAT_NAMES}
