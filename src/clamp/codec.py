"""The heatmap codec: the one home of the crop / heatmap / feature-grid geometry (as mmpose's codecs).

:class:`HeatmapCodec` holds the input crop size, the heatmap size, sigma and the coarse feature grid;
``encode`` builds the training targets of one instance, ``decode`` turns predicted heatmaps into
keypoints (Eq. 1 plus the map back to the crop or to the original image). The dataset, the metric, the
predictor, the W&B callback and the notebook all go through it, so every part agrees on coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from clamp.data.targets import COARSE_SIGMA_DIVISOR, COARSE_TARGET_MODES, keypoint_targets
from clamp.evaluation.decode import ArrayLike, decode_heatmaps, heatmap_to_image_coords

if TYPE_CHECKING:
    from clamp.models.pose_models import PoseModel


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    width, height = size
    return int(width), int(height)


def decode_keypoints(
    heatmaps: ArrayLike,
    center: ArrayLike | None = None,
    scale: ArrayLike | None = None,
    input_size: Sequence[int] | None = None,
) -> ArrayLike:
    """Eq. 1 decoding of (B, K, Hh, Wh) heatmaps into (B, K, 3) keypoints (x, y, score).

    With ``center`` and ``scale`` (B, 2) the coordinates are original-image pixels (the official
    mapping); otherwise input-crop pixels of an ``input_size`` (W, H) crop. Keeps the input's type.
    """
    coords, scores = decode_heatmaps(heatmaps)
    height, width = heatmaps.shape[-2:]
    if center is not None and scale is not None:
        coords = heatmap_to_image_coords(coords, center, scale, (width, height))
    elif input_size is not None:
        stride = (input_size[0] / width, input_size[1] / height)
        coords = coords * (
            torch.tensor(stride, dtype=coords.dtype, device=coords.device)
            if isinstance(coords, torch.Tensor)
            else np.asarray(stride)
        )
    else:
        raise ValueError("decode_keypoints needs center and scale (image pixels) or input_size (crop pixels)")
    if isinstance(coords, torch.Tensor) and isinstance(scores, torch.Tensor):
        return torch.cat([coords.to(scores.dtype), scores.unsqueeze(-1)], dim=-1)
    return np.concatenate([np.asarray(coords, dtype=np.float64), np.asarray(scores)[..., None]], axis=-1)


@dataclass(frozen=True)
class HeatmapCodec:
    """Geometry of one model's crops and targets; sizes are (W, H).

    ``coarse_size`` is the feature grid of the feature-level target (CLAMP), ``None`` for models
    without one; ``coarse_target`` selects the official or the corrected coarse target
    (:mod:`clamp.data.targets`).
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0
    coarse_size: tuple[int, int] | None = None
    coarse_target: str = "official"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", _pair(self.input_size))
        object.__setattr__(self, "heatmap_size", _pair(self.heatmap_size))
        if self.coarse_size is not None:
            object.__setattr__(self, "coarse_size", _pair(self.coarse_size))
        if self.sigma <= 0:
            raise ValueError(f"HeatmapCodec: sigma={self.sigma} must be positive")
        if self.coarse_target not in COARSE_TARGET_MODES:
            raise ValueError(
                f"HeatmapCodec: coarse_target must be one of {COARSE_TARGET_MODES}, got '{self.coarse_target}'"
            )
        for name in ("input_size", "heatmap_size", "coarse_size"):
            size = getattr(self, name)
            if size is not None and min(size) <= 0:
                raise ValueError(f"HeatmapCodec: {name}={size} must be positive")

    @classmethod
    def for_model(cls, model: PoseModel, sigma: float = 2.0, coarse_target: str = "official") -> HeatmapCodec:
        """The codec of a pose model: its input and heatmap sizes, and its feature grid for CLAMP."""
        coarse = model.grid_size if getattr(model, "logit_scale", None) is not None else None
        return cls(model.input_size, model.heatmap_size, sigma, coarse, coarse_target)

    @property
    def coarse_sigma(self) -> float:
        """Sigma of the coarse target (the official ``sigma / 4``)."""
        return self.sigma / COARSE_SIGMA_DIVISOR

    def encode(self, keypoints: np.ndarray) -> dict[str, np.ndarray]:
        """Targets of one instance from (K, 3) input-crop keypoints: ``heatmap`` (K, Hh, Wh) and
        ``target_weight`` (K,), plus ``coarse_heatmap`` / ``coarse_weight`` on the feature grid."""
        heatmap, weight = keypoint_targets(keypoints, self.input_size, self.heatmap_size, self.sigma)
        targets = {"heatmap": heatmap, "target_weight": weight}
        if self.coarse_size is not None:
            coarse, coarse_weight = keypoint_targets(
                keypoints, self.input_size, self.coarse_size, self.coarse_sigma, mode=self.coarse_target
            )
            targets.update(coarse_heatmap=coarse, coarse_weight=coarse_weight)
        return targets

    def decode(self, heatmaps: ArrayLike, center: ArrayLike | None = None, scale: ArrayLike | None = None) -> ArrayLike:
        """(B, K, 3) keypoints from heatmaps: image pixels given the crops' ``center``/``scale``, else
        input-crop pixels (:func:`decode_keypoints`)."""
        return decode_keypoints(heatmaps, center, scale, self.input_size)
