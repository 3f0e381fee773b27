"""Gaussian heatmap targets, with the official code's arithmetic (mmpose 0.x ``TopDownGenerateTarget``).

Two targets are built per instance: the pose heatmap (64x64, sigma 2 for a 256 input) for the
prediction and spatial losses, and a coarse one on the backbone's feature grid whose peak cell picks
the keypoint feature of the feature-level loss (the official ``downtarget``, sigma / 4).

:func:`gaussian_heatmaps` is mmpose's ``_msra_generate_target`` exactly, integer truncation included:
with ``tmp = 3 * sigma``, ``mu = int(x + 0.5)``, ``ul = int(mu - tmp)``, ``br = int(mu + tmp + 1)``,
the ``2 * tmp + 1`` Gaussian patch is pasted with its centre at ``ul + (2 * tmp + 1) // 2``, and the
weight is 0 only when ``ul >= size`` or ``br < 0``. For the pose heatmap (tmp = 6) this is a Gaussian
at the rounded pixel; a point whose patch ends exactly at the left or top edge keeps weight 1 with an
all-zero target, as officially. For the coarse target (sigma 0.5, tmp = 1.5) the truncation has
visible effects, which the paper's numbers were produced with:

* the peak moves one cell right (down) when the rounded cell index is 0 or 1;
* when the rounded index is the grid size or one more (a point in the last half cell or just
  outside), no cell reaches 1, the feature-level loss samples a zero vector, and the weight stays 1;
* points up to three cells outside the grid keep weight 1.

``coarse_target="corrected"`` (:func:`rounded_cell_targets`) instead puts the peak at the rounded
cell with weight 1 exactly when that cell is on the grid. The README's differences section gives
the share of labelled points the two differ on under the paper's augmentation
(``scripts/official_differences.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COARSE_TARGET_MODES = ("official", "corrected")
# The official coarse target's sigma is the pose heatmap's divided by 4, whatever the grid (RN50's 8x8
# and ViT's 16x16 alike).
COARSE_SIGMA_DIVISOR = 4.0


def _profile(start: np.ndarray, centre: np.ndarray, stop: np.ndarray, length: int, sigma: float) -> np.ndarray:
    """(K, length) 1-D Gaussian profiles, nonzero on ``[max(0, start), min(stop, length))`` only."""
    index = np.arange(length)[None, :]
    inside = (index >= start[:, None]) & (index < stop[:, None])
    return np.where(inside, np.exp(-((index - centre[:, None]) ** 2) / (2.0 * sigma**2)), 0.0)


def gaussian_heatmaps(
    keypoints_xy: np.ndarray, visible: np.ndarray, heatmap_size: Sequence[int], sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Official MSRA targets: (K, H, W) float32 heatmaps and (K,) float32 weights (module docstring).

    ``keypoints_xy`` (K, 2) are in heatmap coordinates; ``visible`` (K,) > 0 marks labelled points.
    Channels of unlabelled points are all zero with weight 0.
    """
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    xy = np.asarray(keypoints_xy, dtype=np.float64)
    tmp = 3.0 * sigma
    mu = np.trunc(xy + 0.5)
    upper_left = np.trunc(mu - tmp)
    bottom_right = np.trunc(mu + tmp + 1)
    centre = upper_left + (2 * tmp + 1) // 2
    labelled = np.asarray(visible) > 0
    touches = ~(
        (upper_left[:, 0] >= width) | (upper_left[:, 1] >= height) | (bottom_right[:, 0] < 0) | (bottom_right[:, 1] < 0)
    )
    weights = (labelled & touches).astype(np.float32)
    # The square patch of a Gaussian is separable: outer product of its x and y profiles.
    heatmaps = (
        _profile(upper_left[:, 1], centre[:, 1], bottom_right[:, 1], height, sigma)[:, :, None]
        * _profile(upper_left[:, 0], centre[:, 0], bottom_right[:, 0], width, sigma)[:, None, :]
    )
    heatmaps *= weights.reshape(-1, 1, 1)
    return heatmaps.astype(np.float32), weights


def rounded_cell_targets(
    keypoints_xy: np.ndarray, visible: np.ndarray, grid_size: Sequence[int], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected coarse targets: peak exactly 1 at the rounded cell ``int(x + 0.5)``, weight 1 iff that
    cell is on the grid and the point labelled (``coarse_target="corrected"``)."""
    width, height = int(grid_size[0]), int(grid_size[1])
    mu = np.trunc(np.asarray(keypoints_xy, dtype=np.float64) + 0.5)
    on_grid = (mu[:, 0] >= 0) & (mu[:, 0] < width) & (mu[:, 1] >= 0) & (mu[:, 1] < height)
    weights = ((np.asarray(visible) > 0) & on_grid).astype(np.float32)
    radius = np.floor(3.0 * sigma)
    heatmaps = (
        _profile(mu[:, 1] - radius, mu[:, 1], mu[:, 1] + radius + 1, height, sigma)[:, :, None]
        * _profile(mu[:, 0] - radius, mu[:, 0], mu[:, 0] + radius + 1, width, sigma)[:, None, :]
    )
    heatmaps *= weights.reshape(-1, 1, 1)
    return heatmaps.astype(np.float32), weights


def keypoint_targets(
    keypoints: np.ndarray,
    input_size: Sequence[int],
    grid_size: Sequence[int],
    sigma: float,
    mode: str = "official",
) -> tuple[np.ndarray, np.ndarray]:
    """Targets on a ``grid_size`` (W, H) grid for (K, 3) keypoints in input-crop pixels.

    Converts by the per-axis stride ``input_size / grid_size``; ``mode`` ``"official"`` is
    :func:`gaussian_heatmaps`, ``"corrected"`` :func:`rounded_cell_targets`.
    """
    if mode not in COARSE_TARGET_MODES:
        raise ValueError(f"target mode must be one of {COARSE_TARGET_MODES}, got '{mode}'")
    kpts = np.asarray(keypoints)
    stride = np.array([input_size[0] / grid_size[0], input_size[1] / grid_size[1]], dtype=np.float64)
    build = gaussian_heatmaps if mode == "official" else rounded_cell_targets
    return build(kpts[:, :2] / stride, kpts[:, 2], grid_size, sigma)
