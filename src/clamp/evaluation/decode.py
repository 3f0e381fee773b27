"""Test-time heatmap decoding and flip test, as in mmpose 0.x (CLAMP's copy).

The steps follow ``shared/docs/reference/datasets_and_eval.md`` §4.1 (4-7) exactly:

1. flip test: average the heatmaps of the image and of its mirror, the latter flipped back,
   channel-swapped and shifted one pixel right (``shift_heatmap=True``);
2. decode (``post_process='default'``): argmax plus a quarter-pixel step toward the larger
   neighbour; keypoint score = heatmap maximum;
3. map heatmap pixels to the original image with the crop ``center``/``scale`` (pixels, no /200);
The rescoring and OKS-NMS that follow (steps 4-5) are in :mod:`clamp.evaluation.postprocess`.

Array inputs may be numpy arrays or torch tensors; decoding and flipping keep the input's type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor


def _as_float_tensor(x: ArrayLike, name: str, ndim: int) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    return t.float()


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array or (detached, CPU) tensor."""
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def decode_heatmaps(heatmaps: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """Decode (B, K, H, W) heatmaps into heatmap-pixel coordinates and maxima (mmpose ``'default'``).

    The coordinate is the argmax (first one on ties), moved by ±0.25 px along x and y toward the
    larger of the two neighbours, but only strictly inside ``1 < x < W-1`` and ``1 < y < H-1``
    (mmpose's exact condition, so x = 1 is not refined either). Where the maximum is not positive
    the coordinate is (-1, -1), as mmpose's ``_get_max_preds`` returns it.

    Returns:
        ``coords`` (B, K, 2) float32 (x, y) in heatmap pixels and ``maxvals`` (B, K), as numpy
        arrays for numpy input and as tensors on the input's device for tensor input.
    """
    is_numpy = isinstance(heatmaps, np.ndarray)
    hm = _as_float_tensor(heatmaps, "heatmaps", 4)
    b, k, h, w = hm.shape
    flat = hm.reshape(b, k, h * w)
    maxvals, idx = flat.max(dim=-1)
    x = (idx % w).float()
    y = torch.div(idx, w, rounding_mode="floor").float()

    def neighbour(offset: int) -> Tensor:
        return flat.gather(-1, (idx + offset).clamp(0, h * w - 1).unsqueeze(-1)).squeeze(-1)

    found = maxvals > 0
    inner = found & (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
    x = torch.where(inner, x + 0.25 * torch.sign(neighbour(1) - neighbour(-1)), x)
    y = torch.where(inner, y + 0.25 * torch.sign(neighbour(w) - neighbour(-w)), y)
    coords = torch.stack((x, y), dim=-1)
    coords = torch.where(found.unsqueeze(-1), coords, torch.full_like(coords, -1.0))
    if is_numpy:
        return coords.numpy(), maxvals.numpy()
    return coords, maxvals


def flip_back_heatmaps(heatmaps: ArrayLike, flip_index: Sequence[int], shift: bool = True) -> ArrayLike:
    """Bring heatmaps predicted on a horizontally flipped input back to the original frame.

    Mirrors the width axis, swaps left/right channels (``flip_index[k]`` is the channel that
    becomes channel ``k``) and, with ``shift``, moves the result one pixel right as the official
    ``shift_heatmap=True`` does (``out[..., 1:] = out[..., :-1]``; column 0 keeps its value),
    which compensates the misalignment of mirrored feature maps.
    """
    is_numpy = isinstance(heatmaps, np.ndarray)
    hm = _as_float_tensor(heatmaps, "heatmaps", 4)
    if len(flip_index) != hm.shape[1] or sorted(flip_index) != list(range(hm.shape[1])):
        raise ValueError(
            f"flip_index must be a permutation of the {hm.shape[1]} heatmap channels, got {list(flip_index)}"
        )
    out = hm[:, list(flip_index)].flip(-1)
    if shift:
        out = torch.cat((out[..., :1], out[..., :-1]), dim=-1)
    return out.numpy() if is_numpy else out


def flip_test(
    model_fn: Callable[[Tensor], Any], images: Tensor, flip_index: Sequence[int], shift: bool = True
) -> Tensor:
    """Average the heatmaps of ``images`` and of their mirror images (official flip test).

    ``model_fn`` maps (B, 3, H, W) images to (B, K, Hh, Wh) heatmaps, or to an object with a
    ``heatmaps`` attribute (a ``PoseOutput``).
    """

    def heatmaps_of(x: Tensor) -> Tensor:
        out = model_fn(x)
        return out if isinstance(out, Tensor) else out.heatmaps

    heatmaps = heatmaps_of(images)
    flipped = flip_back_heatmaps(heatmaps_of(images.flip(-1)), flip_index, shift=shift)
    return (heatmaps.float() + flipped) * 0.5


def heatmap_to_image_coords(
    coords_hm: ArrayLike, center: ArrayLike, scale: ArrayLike, heatmap_size: tuple[int, int]
) -> ArrayLike:
    """Map (B, K, 2) heatmap coordinates to original-image pixels (rotation 0, no UDP).

    ``x_img = x_hm * scale_w / W_hm + center_x - scale_w / 2`` (same for y), with ``center``
    and ``scale`` of shape (B, 2) in image pixels and ``heatmap_size`` = (W_hm, H_hm).
    """
    size = np.asarray(heatmap_size, dtype=np.float64)
    if isinstance(coords_hm, Tensor):
        center = torch.as_tensor(center, dtype=coords_hm.dtype, device=coords_hm.device)
        scale = torch.as_tensor(scale, dtype=coords_hm.dtype, device=coords_hm.device)
        per_pixel = scale / torch.as_tensor(size, dtype=coords_hm.dtype, device=coords_hm.device)
    else:
        coords_hm = np.asarray(coords_hm, dtype=np.float64)
        center = np.asarray(center, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        per_pixel = scale / size
    return coords_hm * per_pixel[:, None, :] + center[:, None, :] - scale[:, None, :] * 0.5
