"""Gaussian heatmap targets (MSRA style, as mmpose 0.x ``TopDownGenerateTarget``).

Two targets are built per instance: the pose heatmap (64x64, sigma 2 for a 256 input) for the
prediction loss, and a coarse one on the backbone's feature grid for the feature-level loss
(the official ``downtarget``). Both come from :func:`gaussian_heatmaps`; the coarse one uses the
sigma scaled by the grid ratio (:func:`grid_sigma`, e.g. 2 -> 0.5 for 64 -> 16).

The official down target reproduces the integer-truncation quirks of mmpose's patch bounds
(``int(mu - 1.5)`` shifts the peak one cell when the rounded index is 0 or 1, and no cell
reaches 1 when the rounded index equals the grid size, yet the weight stays 1). This module does
not: the coarse peak always sits at the rounded cell ``int(x / stride + 0.5)`` with value exactly
1, and the coarse target is built with ``peak_inside=True``, so its weight is 1 exactly when the
point is labelled and that cell lies on the grid (then the channel's maximum is exactly 1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def gaussian_heatmaps(
    keypoints_xy: np.ndarray,
    visible: np.ndarray,
    heatmap_size: Sequence[int],
    sigma: float = 2.0,
    peak_inside: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """MSRA Gaussian targets: (K, H, W) float32 heatmaps with peak 1, and (K,) float32 weights.

    ``keypoints_xy`` (K, 2) are in heatmap coordinates. As mmpose ``_msra_generate_target``: the
    peak is at ``mu = int(x + 0.5)`` (Python truncation), values
    ``exp(-((i - mu_x)^2 + (j - mu_y)^2) / (2 sigma^2))`` inside the square patch
    ``|i - mu| <= 3 sigma``, zero elsewhere; weight 1 for labelled (``visible > 0``) points.
    The weight is 0 when the patch does not touch the heatmap; mmpose's exclusive bound also
    keeps weight 1 for a patch ending exactly one pixel left of/above the map, which here gets 0.
    For sigma = 2 the heatmaps equal mmpose's. ``peak_inside=True`` instead requires the peak cell
    ``mu`` itself to lie on the map (used for the coarse target, whose peak cell is sampled).
    Channels with weight 0 are all zero.
    """
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    xy = np.asarray(keypoints_xy, dtype=np.float64)
    num = len(xy)
    radius = int(np.floor(3.0 * sigma))
    mu = np.trunc(xy + 0.5).astype(np.int64)
    reach = 0 if peak_inside else radius
    on_map = (mu[:, 0] + reach >= 0) & (mu[:, 0] - reach < width) & (mu[:, 1] + reach >= 0) & (
        mu[:, 1] - reach < height
    )
    weights = ((np.asarray(visible) > 0) & on_map).astype(np.float32)

    def axis_profile(coords: np.ndarray, length: int) -> np.ndarray:
        d = np.arange(length)[None, :] - coords[:, None]
        return np.where(np.abs(d) <= radius, np.exp(-(d**2) / (2.0 * sigma**2)), 0.0)

    # The square-window Gaussian is separable: outer product of the x and y profiles.
    heatmaps = axis_profile(mu[:, 1], height)[:, :, None] * axis_profile(mu[:, 0], width)[:, None, :]
    heatmaps *= weights.reshape(num, 1, 1)
    return heatmaps.astype(np.float32), weights


def grid_sigma(sigma: float, heatmap_size: Sequence[int], grid_size: Sequence[int]) -> float:
    """Sigma on another grid: ``sigma / (grid stride / heatmap stride)``, e.g. 2.0 -> 0.5 for 64 -> 16."""
    return float(sigma) * float(grid_size[0]) / float(heatmap_size[0])


def keypoint_targets(
    keypoints: np.ndarray,
    input_size: Sequence[int],
    grid_size: Sequence[int],
    sigma: float,
    peak_inside: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets on a ``grid_size`` (W, H) grid for (K, 3) keypoints in input-crop pixels.

    Converts by the per-axis stride ``input_size / grid_size`` and calls :func:`gaussian_heatmaps`.
    """
    kpts = np.asarray(keypoints)
    stride = np.array([input_size[0] / grid_size[0], input_size[1] / grid_size[1]], dtype=np.float64)
    return gaussian_heatmaps(kpts[:, :2] / stride, kpts[:, 2], grid_size, sigma, peak_inside)
