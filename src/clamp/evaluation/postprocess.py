"""Post-processing of decoded poses before COCO evaluation, as in mmpose 0.x (CLAMP's copy).

Steps 4-5 of ``shared/docs/reference/datasets_and_eval.md`` §4.1:

4. rescore each instance: bbox score × mean of the keypoint scores above 0.2 (0 if none);
5. OKS-NMS per image (threshold 0.9, area = padded crop box, category ignored).

The thresholds are the ``evaluation`` config group's (``conf/evaluation/default.yaml``); the
constants here are the official values the functions default to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from clamp.evaluation.decode import ArrayLike, as_numpy

# mmpose's `vis_thr` (0.x) / `keypoint_score_thr` (1.x): keypoints at or below it don't count.
KEYPOINT_SCORE_THRESHOLD = 0.2
# mmpose's `oks_thr` (0.x) / `nms_thr` (1.x).
OKS_NMS_THRESHOLD = 0.9


def rescore(
    keypoint_scores: ArrayLike, bbox_scores: ArrayLike, threshold: float = KEYPOINT_SCORE_THRESHOLD
) -> np.ndarray:
    """Instance score = bbox score × mean of the keypoint scores above ``threshold`` (0 if none).

    ``keypoint_scores`` is (N, K), ``bbox_scores`` (N,); mmpose's rescoring before OKS-NMS.
    """
    scores = as_numpy(keypoint_scores).astype(np.float64)
    above = scores > threshold
    count = above.sum(axis=-1)
    mean = np.where(count > 0, (scores * above).sum(axis=-1) / np.maximum(count, 1), 0.0)
    return as_numpy(bbox_scores).astype(np.float64) * mean


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
    kpts = as_numpy(keypoints).astype(np.float64)
    if kpts.ndim != 3 or kpts.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (N, K, 3), got {kpts.shape}")
    scores = rescore(kpts[..., 2], bbox_scores, threshold)
    columns = [as_numpy(a).reshape(-1) for a in (image_ids, category_ids, instance_ids, areas)]
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
