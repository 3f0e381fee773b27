"""Drawing poses: keypoints and skeleton on an image (W&B previews, predictions on your photos)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from clamp.data.keypoints import KeypointSpec
from clamp.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def denormalize_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) ImageNet-normalised tensor -> (H, W, 3) uint8 RGB."""
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    rgb = array.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def draw_pose(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    spec: KeypointSpec,
    *,
    color: tuple[int, int, int] = (255, 64, 64),
    score_threshold: float = 0.2,
    radius: int | None = None,
) -> np.ndarray:
    """Return a copy of ``image_rgb`` with the skeleton and keypoints drawn.

    ``keypoints`` is (K, 3): x, y and a visibility or score; points at or below
    ``score_threshold`` (unlabelled GT has v=0) are not drawn, nor edges touching them.
    """
    canvas = np.ascontiguousarray(image_rgb.copy())
    k = np.asarray(keypoints, dtype=np.float32)
    if k.shape != (spec.num_keypoints, 3):
        raise ValueError(f"keypoints must have shape ({spec.num_keypoints}, 3) for '{spec.name}', got {k.shape}")
    radius = radius or max(2, round(min(canvas.shape[:2]) / 100))
    shown = k[:, 2] > score_threshold
    for a, b in spec.skeleton:
        if shown[a] and shown[b]:
            pa = (int(round(k[a, 0])), int(round(k[a, 1])))
            pb = (int(round(k[b, 0])), int(round(k[b, 1])))
            cv2.line(canvas, pa, pb, color, max(1, radius // 2), cv2.LINE_AA)
    for i in np.flatnonzero(shown):
        center = (int(round(k[i, 0])), int(round(k[i, 1])))
        cv2.circle(canvas, center, radius, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, center, radius, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two equally tall RGB images next to each other with a white gap (prediction | ground truth)."""
    spacer = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)
