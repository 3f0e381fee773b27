"""OKS AP of a union-keypoint model on each of its datasets, each scored as it would be alone.

:class:`MultiDatasetAPMetric` holds one :class:`~clamp.evaluation.metric.KeypointAPMetric` per dataset,
built with that dataset's own keypoint spec (its sigmas and keypoint order) and its own ground truth.
``update`` hands each dataset its rows of the batch (``batch["dataset_index"]``) and its channels of the
union heatmaps (:meth:`KeypointUnion.channels`, in the dataset's order), so every number is the one the
project's single evaluation path gives for those predictions: no second implementation of the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from clamp.evaluation.metric import GTSource, KeypointAPMetric
from clamp.evaluation.oks import STAT_NAMES
from clamp.keypoints import KeypointSpec, KeypointUnion


def mean_stats(reports: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The unweighted mean of each stat over the datasets that have it (pycocotools' -1, "no GT in that
    area range", is left out; -1 when no dataset has it)."""
    means = {}
    for name in STAT_NAMES:
        values = [float(r[name]) for r in reports if float(r[name]) >= 0]
        means[name] = sum(values) / len(values) if values else -1.0
    return means


class MultiDatasetAPMetric(torch.nn.Module):
    """Per-dataset OKS AP of union-space heatmaps, with :class:`KeypointAPMetric`'s interface.

    ``datasets`` lists ``(name, spec, gt)`` in ``dataset_index`` order; ``results_paths`` optionally names a
    results JSON per dataset. ``compute`` returns the mean over datasets of each stat under its own name
    (what ``val/AP`` and best-checkpoint selection use) and every dataset's under ``<name>/<stat>``;
    :attr:`last_report` holds the means, ``datasets``: each dataset's full report, and ``per_species`` /
    ``per_family`` of all datasets, named ``<dataset>: <species or family>``.
    """

    def __init__(
        self,
        union: KeypointUnion,
        datasets: Sequence[tuple[str, KeypointSpec, GTSource]],
        *,
        results_paths: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.union = union
        self.names = [name for name, _, _ in datasets]
        self.metrics = torch.nn.ModuleList(
            KeypointAPMetric(spec, gt, results_path=(results_paths or {}).get(name), **kwargs)
            for name, spec, gt in datasets
        )
        self.channels = [list(union.channels(spec)) for _, spec, _ in datasets]
        self.last_report: dict[str, Any] | None = None

    def update(self, heatmaps: Tensor, batch: Mapping[str, Any]) -> None:
        """(B, K_union, H, W) heatmaps of a batch whose samples carry ``dataset_index``."""
        if "dataset_index" not in batch:
            raise KeyError("MultiDatasetAPMetric.update: batch lacks 'dataset_index' (samples of a UnionView)")
        if heatmaps.ndim != 4 or heatmaps.shape[1] != self.union.spec.num_keypoints:
            raise ValueError(
                f"MultiDatasetAPMetric.update: expected heatmaps (B, {self.union.spec.num_keypoints}, H, W) for "
                f"'{self.union.name}', got shape {tuple(heatmaps.shape)}"
            )
        index = torch.as_tensor(batch["dataset_index"], device=heatmaps.device).reshape(-1)
        for d, (metric, channels) in enumerate(zip(self.metrics, self.channels, strict=True)):
            rows = torch.nonzero(index == d).flatten()
            if len(rows) == 0:
                continue
            part = {
                key: value[rows.to(value.device)]
                for key, value in batch.items()
                if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == len(index)
            }
            metric.update(heatmaps[rows][:, channels], part)

    def compute(self) -> dict[str, Tensor]:
        reports = []
        stats: dict[str, Tensor] = {}
        for name, metric in zip(self.names, self.metrics, strict=True):
            values = metric.compute()
            stats.update({f"{name}/{key}": value for key, value in values.items()})
            reports.append(dict(metric.last_report or {}))
        means = mean_stats(reports)
        # The breakdowns of all datasets in one table each (what the W&B evaluation logger draws).
        per_species = {
            f"{name}/{key}": {**row, "name": f"{name}: {row['name']}"}
            for name, report in zip(self.names, reports, strict=True)
            for key, row in report.get("per_species", {}).items()
        }
        per_family = {
            f"{name}: {family}": row
            for name, report in zip(self.names, reports, strict=True)
            for family, row in report.get("per_family", {}).items()
        }
        self.last_report = {
            **means,
            "per_species": per_species,
            "per_family": per_family,
            "datasets": dict(zip(self.names, reports, strict=True)),
        }
        return {**{k: torch.tensor(v, dtype=torch.float64) for k, v in means.items()}, **stats}

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset()
