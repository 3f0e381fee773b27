"""Build an open_clip ``CLIP`` model and load CLIP weights into it, offline-safe.

``load_open_clip(arch, pretrained, image_size=...)`` is the one way the project makes a CLIP model:

* ``arch``: an open_clip config name (``"RN50"``, ``"ViT-B-16"``, ``"ViT-L-14"``; ``"ViT-B/16"`` is
  accepted too) or one of the tiny random-weight configs of this module (``"tiny-rn"``, ``"tiny-vit"``),
  used by the tests and the offline demo.
* ``pretrained``: ``None`` (random init), an open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``, ...),
  or a local file: OpenAI's TorchScript release (``RN50.pt``, ``ViT-B-16.pt``, ``ViT-L-14.pt``), a plain
  state dict (``.pt``/``.pth``/``.bin``), a ``{"state_dict": ...}`` checkpoint (``module.`` prefixes are
  stripped) or a ``.safetensors`` file. ``torch.save(model.state_dict(), path)`` round-trips bit-exactly.

Weight files are read by :mod:`clamp.models.weight_files` and tags resolved by :mod:`clamp.models.hub`.
The model is ``open_clip.CLIP(**config)`` with open_clip's own config for ``arch`` at ``image_size``
(what ``open_clip.create_model(arch, force_image_size=image_size)`` builds, without its weight loading and
its "initialized randomly" warning). The checkpoint is loaded by this module so that CLIP's positional
tables trained at 224 px are resized to the new grid exactly as the official CLAMP code does it: bilinear,
``align_corners=False``, class position kept (RN50 7x7+1 -> 8x8+1 and ViT-B/16 14x14+1 -> 16x16+1 at
256 px). open_clip's loader would resize the ViT table bicubically and cannot resize RN50's attention-pool
table at all.

Tags never wait on a network: the local caches (Hugging Face hub cache, ``~/.cache/clip``) are looked up
first; when the file is not there, ``HF_HUB_OFFLINE=1`` or a failed 3-second probe of the download host
(HTTP HEAD) raises :class:`PretrainedWeightsError` at once, instead of huggingface_hub's ~46 s of retries.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import open_clip

from clamp.models.hub import resolve_pretrained
from clamp.models.weight_files import load_clip_state_dict, read_state_dict

logger = logging.getLogger(__name__)

_TINY_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}

#: Small random-weight CLIP configs (same module types as the real ones) for tests and the offline demo.
#: The text tower keeps CLIP's real tokenizer vocabulary and context length, so prompts tokenise as usual.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-rn": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 64, "patch_size": None},
        "text_cfg": _TINY_TEXT_CFG,
    },
    "tiny-vit": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {"layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": _TINY_TEXT_CFG,
    },
}


def load_open_clip(arch: str, pretrained: str | os.PathLike | None, *, image_size: int,
                   **cfg_overrides: Any) -> open_clip.CLIP:
    """Create an open_clip ``CLIP`` at ``image_size`` and load ``pretrained`` weights into it.

    Args:
        arch: open_clip config name or a name in :data:`TINY_CONFIGS`.
        pretrained: ``None``, an open_clip tag for ``arch``, or a path to a weight file (see module doc).
        image_size: square input size in pixels; must be a multiple of the vision tower's stride
            (32 for ModifiedResNet, the patch size for a ViT).
        **cfg_overrides: top-level config keys (``embed_dim``, ``quick_gelu``, ...); ``vision_cfg`` and
            ``text_cfg`` dicts are merged into the base config rather than replacing it.
            ``quick_gelu`` defaults to the tag's setting, else ``True`` (OpenAI CLIP and CLAMP use
            QuickGELU).

    Returns:
        The model in train mode, fp32, on the CPU.

    Raises:
        ValueError: unknown ``arch``, unsupported config, or ``image_size`` not a multiple of the stride.
        PretrainedWeightsError: the weights cannot be found, fetched offline or loaded into ``arch``.
    """
    arch = arch.replace("/", "-")
    cfg = _model_config(arch, image_size, cfg_overrides)
    checkpoint, tag_quick_gelu = None, None
    if pretrained is not None:
        checkpoint, tag_quick_gelu = resolve_pretrained(arch, pretrained, tags=arch not in TINY_CONFIGS)
    if "quick_gelu" not in cfg_overrides:
        cfg["quick_gelu"] = tag_quick_gelu if tag_quick_gelu is not None else cfg.get("quick_gelu", True)
    # Read the file before building the model so that a bad file fails before a slow build.
    state_dict = None if checkpoint is None else read_state_dict(checkpoint)
    model = open_clip.CLIP(**cfg)
    if state_dict is not None:
        load_clip_state_dict(model, state_dict, source=f"{checkpoint} (arch {arch})")
        logger.info("loaded CLIP weights for %s at %d px from %s", arch, image_size, checkpoint)
    else:
        logger.debug("built %s at %d px with random weights", arch, image_size)
    return model


def _model_config(arch: str, image_size: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """The CLIP constructor kwargs for ``arch`` with ``overrides`` merged and ``image_size`` forced."""
    if arch in TINY_CONFIGS:
        cfg = copy.deepcopy(TINY_CONFIGS[arch])
    else:
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise ValueError(
                f"unknown CLIP arch {arch!r}: use an open_clip config name (e.g. 'RN50', 'ViT-B-16', "
                f"'ViT-L-14'; see open_clip.list_models()) or one of {sorted(TINY_CONFIGS)}")
    overrides = dict(overrides)
    for tower in ("vision_cfg", "text_cfg"):
        cfg[tower] = {**cfg[tower], **overrides.pop(tower, {})}
    cfg.update(overrides)
    unsupported = [k for k in ("custom_text", "multimodal_cfg") if cfg.get(k)]
    unsupported += [k for k in ("timm_model_name",) if cfg["vision_cfg"].get(k)]
    unsupported += [k for k in ("hf_model_name",) if cfg["text_cfg"].get(k)]
    if unsupported:
        raise ValueError(f"CLIP arch {arch!r} uses {unsupported}: only configs with open_clip's own "
                         "ModifiedResNet / VisionTransformer and text transformer are supported")
    vision = cfg["vision_cfg"]
    stride = vision.get("patch_size") or 32
    if not isinstance(image_size, int) or image_size <= 0 or image_size % stride:
        raise ValueError(f"image_size={image_size!r} for {arch}: must be a positive multiple of the "
                         f"vision stride {stride}")
    vision["image_size"] = image_size
    return cfg
