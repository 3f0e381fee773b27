"""Optimiser parameter groups: the training layer's, from what the model declares (as timm's param groups)."""

from __future__ import annotations

from typing import Any

from torch import nn

BACKBONE_PREFIX = "image_encoder."


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """AdamW groups: the backbone (``image_encoder``) at ``lr * backbone_lr_mult``, everything else at ``lr``;
    the parameters the model lists in ``no_weight_decay()`` without weight decay; frozen parameters (the
    text encoder) left out; empty groups dropped. Group names: backbone, backbone_no_decay, head,
    head_no_decay."""
    no_decay = model.no_weight_decay()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith(BACKBONE_PREFIX), name not in no_decay), []).append(param)
    return [
        {
            "name": ("backbone" if backbone else "head") + ("" if decay else "_no_decay"),
            "params": params,
            "lr": lr * (backbone_lr_mult if backbone else 1.0),
            "weight_decay": weight_decay if decay else 0.0,
        }
        for (backbone, decay), params in sorted(groups.items(), reverse=True)
    ]
