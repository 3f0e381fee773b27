"""CLAMP: prompt-based contrastive learning for animal pose estimation."""

from __future__ import annotations

from typing import Any

__all__ = ["create_model", "list_models"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import clamp` (e.g. clamp.data alone) does not pay for torch + open_clip.
    if name in __all__:
        from clamp import models

        return getattr(models, name)
    raise AttributeError(f"module 'clamp' has no attribute '{name}'")
