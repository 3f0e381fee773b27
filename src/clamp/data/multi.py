"""Several datasets as one training set in a union keypoint space (:class:`clamp.keypoints.KeypointUnion`).

Each member dataset is read, split, augmented and encoded as it would be alone, in its own keypoint
order (its flip pairs, which the union keeps, and its own half-body sets); :class:`UnionView` then
places its K channels at their union channels. A union channel the member does not annotate gets a
zero heatmap and target weight 0: no loss, so the model is never taught that the keypoint is absent.
Every sample carries ``dataset_index``, which routes it to its own dataset's evaluation.

:class:`MultiTopDownDataset` concatenates the views; :class:`RatioSampler` draws an epoch from them at
configured ratios, deterministic from the seed and resumable like :class:`~clamp.data.dataset.EpochSampler`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from clamp.data.dataset import EpochSampler, SampleKey, TopDownDataset
from clamp.errors import ClampError

# Per-keypoint entries of a sample, with the axis that runs over keypoints.
_KEYPOINT_FIELDS = ("heatmap", "target_weight", "coarse_heatmap", "coarse_weight", "keypoints")


class SamplingRatioError(ClampError, ValueError):
    """Sampling ratios that are not one positive number per dataset."""


class UnionView(Dataset):
    """A member :class:`TopDownDataset` whose samples are laid out in the union's channels.

    ``channels`` is the union channel of each of the member's keypoints
    (:meth:`KeypointUnion.channels`); ``num_keypoints`` the union's K; ``dataset_index`` is stored in
    every sample.
    """

    def __init__(
        self, dataset: TopDownDataset, channels: Sequence[int], num_keypoints: int, dataset_index: int
    ) -> None:
        if len(channels) != dataset.data.spec.num_keypoints:
            raise ValueError(
                f"UnionView: {len(channels)} union channels for the {dataset.data.spec.num_keypoints} keypoints "
                f"of '{dataset.data.spec.name}'"
            )
        self.dataset = dataset
        self.channels = torch.as_tensor(list(channels), dtype=torch.int64)
        self.num_keypoints = num_keypoints
        self.dataset_index = dataset_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        sample = self.dataset[key]
        if "skipped" in sample:
            return sample
        for name in _KEYPOINT_FIELDS:
            if name in sample:
                value = sample[name]
                # Unannotated union keypoints: zero target, zero weight, and (0, 0, v=0) coordinates.
                full = value.new_zeros((self.num_keypoints, *value.shape[1:]))
                full[self.channels] = value
                sample[name] = full
        sample["dataset_index"] = torch.tensor(self.dataset_index, dtype=torch.int64)
        return sample


class MultiTopDownDataset(ConcatDataset):
    """The concatenation of :class:`UnionView` s, indexed by plain integers or sampler keys
    ``(epoch, index[, draw])`` whose index runs over all members in order."""

    datasets: list[UnionView]

    def locate(self, index: int) -> tuple[int, int]:
        """(member, index within it) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"MultiTopDownDataset: index {index} out of range 0..{len(self) - 1}")
        member = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        return member, index - (self.cumulative_sizes[member - 1] if member else 0)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(key, tuple):
            member, local = self.locate(key[1])
            return self.datasets[member][(key[0], local, *key[2:])]
        member, local = self.locate(key)
        return self.datasets[member][local]


def sample_counts(sizes: Sequence[int], ratios: Sequence[float], total: int) -> list[int]:
    """How many of ``total`` draws each dataset gets: shares ``ratio / sum(ratios)``, rounded by largest
    remainder (ties to the earlier dataset) so that they sum to ``total``."""
    if len(ratios) != len(sizes) or any(not np.isfinite(r) or r <= 0 for r in ratios):
        raise SamplingRatioError(f"sampling ratios {list(ratios)}: give one positive number per dataset ({len(sizes)})")
    shares = np.asarray(ratios, dtype=np.float64) / float(np.sum(ratios)) * total
    counts = np.floor(shares).astype(np.int64)
    remainder = shares - counts
    for i in sorted(range(len(sizes)), key=lambda j: (-remainder[j], j))[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


class RatioSampler(EpochSampler):
    """Sampler keys ``(epoch, index, draw)`` over a :class:`MultiTopDownDataset`, each dataset drawn at
    its ratio.

    An epoch holds ``epoch_size`` keys (default: the datasets' total size), ``sample_counts`` of them
    from each dataset. A dataset's keys go through a permutation of it drawn from ``(seed, epoch,
    dataset)``, then through fresh ones when it is drawn more often than its size (``draw`` counts the
    passes, so a repeated sample gets a new augmentation); the epoch's keys are then shuffled together
    from ``(seed, epoch)``. Sharding over ranks and :meth:`resume` are :class:`EpochSampler`'s.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        ratios: Sequence[float],
        *,
        epoch_size: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if any(size <= 0 for size in sizes):
            raise SamplingRatioError(f"RatioSampler: every dataset needs a sample, got sizes {list(sizes)}")
        total = int(sum(sizes)) if epoch_size is None else int(epoch_size)
        if total <= 0:
            raise SamplingRatioError(f"RatioSampler: epoch_size={epoch_size} must be positive")
        super().__init__(total, shuffle=True, seed=seed, num_replicas=num_replicas, rank=rank)
        self.sizes = [int(s) for s in sizes]
        self.counts = sample_counts(self.sizes, ratios, total)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    def order(self) -> np.ndarray:
        parts = []
        for d, (size, count) in enumerate(zip(self.sizes, self.counts, strict=True)):
            passes = -(-count // size)
            local = np.concatenate(
                [np.random.default_rng([self.seed, 4, self.epoch, d, p]).permutation(size) for p in range(passes)]
            )[:count]
            draw = np.arange(count, dtype=np.int64) // size
            parts.append(np.stack([self.offsets[d] + local, draw], axis=1))
        keys = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        return keys[np.random.default_rng([self.seed, 5, self.epoch]).permutation(len(keys))]
