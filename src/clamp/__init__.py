"""CLAMP: prompt-based contrastive learning for animal pose estimation.

The library: ``clamp.create_model(name)`` / ``clamp.list_models()`` (networks by name, as open_clip
and timm), ``clamp.load_model(checkpoint)`` (a trained network from its checkpoint) and
``clamp.Predictor`` (keypoints for your own images). It imports neither Lightning nor Hydra.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_model": "clamp.models",
    "list_models": "clamp.models",
    "load_model": "clamp.checkpoint",
    "Predictor": "clamp.predictor",
    "ClampError": "clamp.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy, so that `import clamp` (e.g. clamp.data alone) does not pay for torch + open_clip.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clamp' has no attribute '{name}'")
