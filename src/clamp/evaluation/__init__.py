"""Evaluation: heatmap decoding, flip test, rescoring and OKS-NMS, COCO OKS AP (pycocotools) and a torchmetrics Metric.

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
    "rescore": "postprocess",
    "keypoint_results": "postprocess",
    "oks_iou": "postprocess",
    "oks_nms": "postprocess",
    "nms_by_image": "postprocess",
    "to_coco_results": "postprocess",
    "evaluate_keypoints": "oks",
    "STAT_NAMES": "oks",
    "KeypointAPMetric": "metric",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clamp.evaluation' has no attribute '{name}'")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
