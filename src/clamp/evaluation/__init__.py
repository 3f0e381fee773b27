"""Evaluation: heatmap decoding, flip test, OKS-NMS, COCO OKS AP (pycocotools) and a torchmetrics Metric.

Names are imported lazily (PEP 562) so that ``python -m clamp.evaluation.oks`` neither imports
torch/torchmetrics nor triggers runpy's "found in sys.modules" warning for the module it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "decode_heatmaps": "decode",
    "flip_back_heatmaps": "decode",
    "flip_test": "decode",
    "heatmap_to_image_coords": "decode",
    "rescore": "decode",
    "keypoint_results": "decode",
    "oks_iou": "decode",
    "oks_nms": "decode",
    "nms_by_image": "decode",
    "to_coco_results": "decode",
    "evaluate_keypoints": "oks",
    "STAT_NAMES": "oks",
    "KeypointAPMetric": "metric",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clamp.evaluation' has no attribute '{name}'")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
