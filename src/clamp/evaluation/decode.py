"""Test-time heatmap decoding, flip test, rescoring and OKS-NMS, as in mmpose 0.x (CLAMP's copy).

The steps follow ``shared/docs/reference/datasets_and_eval.md`` §4.1 (4-7) exactly:

1. flip test: average the heatmaps of the image and of its mirror, the latter flipped back,
   channel-swapped and shifted one pixel right (``shift_heatmap=True``);
2. decode (``post_process='default'``): argmax plus a quarter-pixel step toward the larger
   neighbour; keypoint score = heatmap maximum;
3. map heatmap pixels to the original image with the crop ``center``/``scale`` (pixels, no /200);
4. rescore each instance: bbox score × mean of the keypoint scores above 0.2 (0 if none);
5. OKS-NMS per image (threshold 0.9, area = padded crop box, category ignored).

Array inputs may be numpy arrays or torch tensors; decoding and flipping keep the input's type.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor

# mmpose's `vis_thr` (0.x) / `keypoint_score_thr` (1.x): keypoints at or below it don't count.
KEYPOINT_SCORE_THRESHOLD = 0.2
# mmpose's `oks_thr` (0.x) / `nms_thr` (1.x).
OKS_NMS_THRESHOLD = 0.9


def _as_float_tensor(x: ArrayLike, name: str, ndim: int) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    return t.float()


def _to_numpy(x: Any) -> np.ndarray:
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


def rescore(
    keypoint_scores: ArrayLike, bbox_scores: ArrayLike, threshold: float = KEYPOINT_SCORE_THRESHOLD
) -> np.ndarray:
    """Instance score = bbox score × mean of the keypoint scores above ``threshold`` (0 if none).

    ``keypoint_scores`` is (N, K), ``bbox_scores`` (N,); mmpose's rescoring before OKS-NMS.
    """
    scores = _to_numpy(keypoint_scores).astype(np.float64)
    above = scores > threshold
    count = above.sum(axis=-1)
    mean = np.where(count > 0, (scores * above).sum(axis=-1) / np.maximum(count, 1), 0.0)
    return _to_numpy(bbox_scores).astype(np.float64) * mean


def keypoint_results(
    keypoints: ArrayLike,
    image_ids: ArrayLike,
    category_ids: ArrayLike,
    areas: ArrayLike,
    bbox_scores: ArrayLike,
    instance_ids: ArrayLike,
    *,
    threshold: float = KEYPOINT_SCORE_THRESHOLD,
) -> list[dict[str, Any]]:
    """Per-instance result entries (before NMS) from decoded predictions of N instances.

    Args:
        keypoints: (N, K, 3) image-pixel x, y and keypoint score (heatmap maximum).
        image_ids, category_ids, instance_ids: (N,) ints; ``category_id`` is the GT species id,
            so COCOeval matches per species as the official evaluator does.
        areas: (N,) padded crop-box area ``scale_w * scale_h``, used only by OKS-NMS.
        bbox_scores: (N,) detector score (1 for GT boxes).

    Returns:
        Dicts with ``image_id``, ``category_id``, ``instance_id``, ``keypoints`` ((K, 3) float64
        array), ``area`` and the rescored ``score`` (see :func:`rescore`).
    """
    kpts = _to_numpy(keypoints).astype(np.float64)
    if kpts.ndim != 3 or kpts.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (N, K, 3), got {kpts.shape}")
    scores = rescore(kpts[..., 2], bbox_scores, threshold)
    columns = [_to_numpy(a).reshape(-1) for a in (image_ids, category_ids, instance_ids, areas)]
    if any(len(c) != len(kpts) for c in columns) or len(scores) != len(kpts):
        raise ValueError(f"keypoint_results: all inputs need {len(kpts)} entries (one per instance)")
    image_col, cat_col, inst_col, area_col = columns
    return [
        {
            "image_id": int(image_col[i]),
            "category_id": int(cat_col[i]),
            "instance_id": int(inst_col[i]),
            "keypoints": kpts[i],
            "area": float(area_col[i]),
            "score": float(scores[i]),
        }
        for i in range(len(kpts))
    ]


def oks_iou(
    reference: np.ndarray, others: np.ndarray, area_ref: float, areas: np.ndarray, sigmas: Sequence[float]
) -> np.ndarray:
    """OKS between one pose and M others as mmpose's ``oks_iou`` (all keypoints, mean of the areas).

    ``reference`` (K, 3) and ``others`` (M, K, 3) are image-pixel poses.
    """
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    d2 = ((others[..., :2] - reference[None, :, :2]) ** 2).sum(-1)
    e = d2 / variances / ((area_ref + np.asarray(areas)[:, None]) / 2 + np.spacing(1)) / 2
    return np.exp(-e).mean(-1).astype(np.float32)


def oks_nms(
    results: Sequence[dict[str, Any]], sigmas: Sequence[float], threshold: float = OKS_NMS_THRESHOLD
) -> list[dict[str, Any]]:
    """Greedy OKS-NMS over the results of ONE image, exactly as mmpose 0.x ``oks_nms``.

    Keeps the highest-scoring pose and drops every remaining pose whose OKS with it exceeds
    ``threshold``; repeats on the rest. Category is ignored, as in the official code. Returns the
    kept entries in their input order.
    """
    if not results:
        return []
    scores = np.array([r["score"] for r in results])
    kpts = np.stack([np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3) for r in results])
    areas = np.array([r["area"] for r in results], dtype=np.float64)
    # Same ordering expression as mmpose, so ties break identically.
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        overlap = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas)
        order = order[np.where(overlap <= threshold)[0] + 1]
    kept = set(keep)
    return [r for i, r in enumerate(results) if i in kept]


def nms_by_image(
    results: Sequence[dict[str, Any]], sigmas: Sequence[float], threshold: float = OKS_NMS_THRESHOLD
) -> list[dict[str, Any]]:
    """Run :func:`oks_nms` separately on each image's results; images in ascending id order."""
    per_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        per_image[r["image_id"]].append(r)
    return [r for image_id in sorted(per_image) for r in oks_nms(per_image[image_id], sigmas, threshold)]


def to_coco_results(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO keypoint results format: ``image_id``, ``category_id``, flat ``keypoints`` (3K), ``score``.

    No ``bbox`` field, so pycocotools' ``loadRes`` derives each prediction's area from its
    keypoints, as for the official results file.
    """
    return [
        {
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "keypoints": [float(v) for v in np.asarray(r["keypoints"]).reshape(-1)],
            "score": float(r["score"]),
        }
        for r in results
    ]
