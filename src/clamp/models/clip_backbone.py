"""Build an open_clip ``CLIP`` / ``CustomTextCLIP`` model and load CLIP weights into it, offline-safe.

``load_open_clip(arch, pretrained, image_size=...)`` is the one way the project makes a CLIP model:

* ``arch``: an open_clip config name (``"RN50"``, ``"ViT-B-16"``, ``"ViT-L-14"``, ``"RN101"``,
  ``"ViT-B-32"``, ``"ViT-L-14-336"``, ``"convnext_base"``, ``"EVA02-B-16"``, ...; ``"ViT-B/16"`` is
  accepted too; see ``open_clip.list_models()``) or one of the tiny random-weight configs of this module
  (``"tiny-rn"``, ``"tiny-vit"``), used by the tests and the offline demo.
* ``pretrained``: ``None`` (random init), an open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``, ...),
  or a local file: OpenAI's TorchScript release (``RN50.pt``, ``ViT-B-16.pt``, ``ViT-L-14.pt``), a plain
  state dict (``.pt``/``.pth``/``.bin``), a ``{"state_dict": ...}`` checkpoint (``module.`` prefixes are
  stripped) or a ``.safetensors`` file. ``torch.save(model.state_dict(), path)`` round-trips bit-exactly.

Supported vision towers (:func:`backbone_family`), each with a dense adapter in
:mod:`clamp.models.image_encoders`:

* ``modified_resnet``: open_clip's ModifiedResNet (RN50, RN101, RN50x4, RN50x16, RN50x64);
* ``vit``: open_clip's VisionTransformer with class-token pooling (ViT-B-32, ViT-B-16, ViT-L-14,
  ViT-L-14-336, ViT-H-14, ViT-bigG-14, ...);
* ``timm_vit``: timm ViT trunks, EVA / EVA02 and timm ``VisionTransformer`` with token or average
  pooling (EVA02-B-16, EVA02-L-14, EVA02-L-14-336, EVA01-g-14, vit_medium_patch16_gap_256, ...);
* ``timm_convnext``: timm ConvNeXt trunks (convnext_base, convnext_large_d, convnext_xxlarge, ...).

The text tower must be open_clip's own transformer with CLIP's BPE tokenizer (shipped in the wheel)
pooled at the EOT token, as CLAMP's prompts need (Eq. 2). Architectures whose tokenizer comes from the
Hugging Face hub (SigLIP, SigLIP 2, CLIPA, the multilingual towers) raise :class:`HubTokenizerError`
at once, before anything is built or downloaded; other unsupported designs (CoCa, attention-pooled or
``map``-pooled vision towers, Swin, FastViT) raise :class:`UnsupportedBackboneError`.

Weight files are read by :mod:`clamp.models.weight_files` and tags resolved by :mod:`clamp.models.hub`.
The model is ``open_clip.CLIP(**config)`` (``CustomTextCLIP`` where the config says ``custom_text``) with
open_clip's own config for ``arch`` at ``image_size`` (what ``open_clip.create_model(arch,
force_image_size=image_size)`` builds, without its weight loading and its "initialized randomly"
warning). timm trunks are built by timm at their default size and then set to ``image_size`` with
timm's ``set_input_size``. The checkpoint is loaded by this module so that positional tables trained at
224 px are resized to the new grid exactly as the official CLAMP code does it: bilinear,
``align_corners=False``, class position kept (RN50 7x7+1 -> 8x8+1 and ViT-B/16 14x14+1 -> 16x16+1 at
256 px; the same rule for timm ViT ``pos_embed`` tables). open_clip's loader would resize the ViT table
bicubically and cannot resize RN50's attention-pool table at all.

Tags never wait on a network: the local caches (Hugging Face hub cache, ``~/.cache/clip``) are looked up
first; when the file is not there, ``HF_HUB_OFFLINE=1`` or a failed 3-second probe of the download host
(HTTP HEAD) raises :class:`PretrainedWeightsError` at once, instead of huggingface_hub's ~46 s of retries.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from typing import Any

import open_clip
import torch
from torch import nn

from clamp.errors import ClampError, did_you_mean
from clamp.models.hub import offline_mode, resolve_pretrained
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

#: The four vision-tower families with a dense adapter (see the module docstring).
FAMILIES = ("modified_resnet", "vit", "timm_vit", "timm_convnext")
#: Families whose feature map comes from a convolutional last stage (the official RN50 settings apply).
CONV_FAMILIES = ("modified_resnet", "timm_convnext")
_EXAMPLES = "RN50, RN101, RN50x4, ViT-B-32, ViT-B-16, ViT-L-14-336, convnext_base, EVA02-B-16"


class UnsupportedBackboneError(ClampError, ValueError):
    """An open_clip architecture without a dense adapter or a CLIP-tokenizer text tower."""


class HubTokenizerError(UnsupportedBackboneError):
    """An architecture whose tokenizer comes from the Hugging Face hub (SigLIP, SigLIP 2, CLIPA, ...)."""


def load_open_clip(
    arch: str, pretrained: str | os.PathLike | None, *, image_size: int, **cfg_overrides: Any
) -> nn.Module:
    """Create an open_clip ``CLIP`` (or ``CustomTextCLIP``) at ``image_size`` and load ``pretrained``.

    Args:
        arch: open_clip config name or a name in :data:`TINY_CONFIGS`.
        pretrained: ``None``, an open_clip tag for ``arch``, or a path to a weight file (see module doc).
        image_size: square input size in pixels; must be a multiple of the vision tower's stride
            (:func:`vision_stride`: 32 for ModifiedResNet and ConvNeXt, the patch size for a ViT).
        **cfg_overrides: top-level config keys (``embed_dim``, ``quick_gelu``, ...); ``vision_cfg`` and
            ``text_cfg`` dicts are merged into the base config rather than replacing it (e.g.
            ``vision_cfg={"timm_model_name": "convnext_atto"}`` picks a smaller timm trunk).
            ``quick_gelu`` defaults to the tag's setting, else the config's, else ``True`` for the
            architectures OpenAI released (their weights use QuickGELU, as CLAMP does) and ``False``
            (open_clip's default) for the others.

    Returns:
        The model in train mode, fp32, on the CPU.

    Raises:
        HubTokenizerError: the text tower needs a Hugging Face hub tokenizer (raised before any I/O).
        UnsupportedBackboneError: no dense adapter or CLIP text side for this design.
        ValueError: unknown ``arch`` or ``image_size`` not a multiple of the stride.
        PretrainedWeightsError: the weights cannot be found, fetched offline or loaded into ``arch``.
    """
    arch = arch.replace("/", "-")
    cfg = model_config(arch, image_size, **cfg_overrides)
    checkpoint, tag_quick_gelu = None, None
    if pretrained is not None:
        checkpoint, tag_quick_gelu = resolve_pretrained(arch, pretrained, tags=arch not in TINY_CONFIGS)
    if "quick_gelu" not in cfg_overrides and tag_quick_gelu is not None:
        cfg["quick_gelu"] = tag_quick_gelu
    # Read the file before building the model so that a bad file fails before a slow build.
    state_dict = None if checkpoint is None else read_state_dict(checkpoint)
    custom_text = bool(cfg.pop("custom_text", False))
    model = (open_clip.CustomTextCLIP if custom_text else open_clip.CLIP)(**cfg)
    if cfg["vision_cfg"].get("timm_model_name"):
        _set_timm_input_size(model.visual, image_size)
    if state_dict is not None:
        load_clip_state_dict(model, state_dict, source=f"{checkpoint} (arch {arch})")
        logger.info("loaded CLIP weights for %s at %d px from %s", arch, image_size, checkpoint)
    else:
        logger.debug("built %s at %d px with random weights", arch, image_size)
    return model


def text_tower(clip_model: nn.Module) -> nn.Module:
    """The module holding the text transformer: ``CLIP`` itself, or ``CustomTextCLIP.text``."""
    return clip_model.text if isinstance(clip_model, open_clip.CustomTextCLIP) else clip_model


def model_config(arch: str, image_size: int, **overrides: Any) -> dict[str, Any]:
    """The constructor kwargs of ``arch`` with ``overrides`` merged and ``image_size`` set, checked.

    ``quick_gelu`` is resolved as :func:`load_open_clip` documents (without a tag); ``custom_text`` says
    which open_clip class to build. Raises as :func:`load_open_clip` does, without building anything.
    """
    arch = arch.replace("/", "-")
    cfg = _base_config(arch, overrides)
    check_supported(arch, cfg)
    stride = vision_stride(arch, **overrides)
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0 or image_size % stride:
        raise ValueError(
            f"image_size={image_size!r} for {arch}: must be a positive multiple of the vision stride {stride}"
        )
    cfg["vision_cfg"]["image_size"] = image_size
    return cfg


def _base_config(arch: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if arch in TINY_CONFIGS:
        cfg = copy.deepcopy(TINY_CONFIGS[arch])
    else:
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise ValueError(
                f"unknown CLIP arch {arch!r}{did_you_mean(arch, open_clip.list_models())}: use an open_clip "
                f"config name (e.g. {_EXAMPLES}; see open_clip.list_models()) or one of {sorted(TINY_CONFIGS)}"
            )
        cfg = copy.deepcopy(cfg)
    overrides = copy.deepcopy(dict(overrides))
    for tower in ("vision_cfg", "text_cfg"):
        cfg[tower] = {**cfg[tower], **overrides.pop(tower, {})}
    cfg.update(overrides)
    if "quick_gelu" not in cfg:
        cfg["quick_gelu"] = _released_by_openai(arch)
    return cfg


def _released_by_openai(arch: str) -> bool:
    return "openai" in open_clip.list_pretrained_tags_by_model(arch)


def check_supported(arch: str, cfg: dict[str, Any]) -> None:
    """Raise :class:`HubTokenizerError` / :class:`UnsupportedBackboneError` for designs CLAMP cannot use.

    Looks only at the config (and, for timm trunks, at the trunk built on the meta device): no network.
    """
    text, vision = cfg["text_cfg"], cfg["vision_cfg"]
    hub_name = text.get("hf_tokenizer_name") or text.get("hf_model_name")
    if hub_name:
        offline = (
            " and this machine is offline (HF_HUB_OFFLINE is set), so it could not be fetched either"
            if offline_mode()
            else ""
        )
        raise HubTokenizerError(
            f"CLIP arch {arch!r} takes its tokenizer from the Hugging Face hub ({hub_name!r}) instead of "
            f"CLIP's BPE vocabulary that ships with open_clip{offline}. CLAMP's prompts (Eq. 2: "
            "[SOT][context][keypoint name][EOT], read at the EOT token) need a CLIP-tokenizer text tower, so "
            f"SigLIP, SigLIP 2, CLIPA and the multilingual towers are not supported; nothing was downloaded. "
            f"Use an architecture with the CLIP tokenizer, e.g. {_EXAMPLES}."
        )
    problems = []
    if cfg.get("multimodal_cfg"):
        problems.append("a CoCa multimodal decoder")
    if text.get("pool_type", "argmax") != "argmax" or text.get("no_causal_mask") or text.get("embed_cls"):
        problems.append("a text tower not pooled at the EOT token with a causal mask")
    if vision.get("timm_model_name"):
        info = _timm_trunk_info(vision)
        if info["family"] is None:
            problems.append(
                f"a timm {info['type']} trunk with global pool {info['pool']!r} (supported: EVA / "
                "VisionTransformer with 'token' or 'avg' pooling, ConvNeXt)"
            )
    elif not isinstance(vision.get("layers"), (list, tuple)):
        if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok":
            problems.append(
                f"a ViT pooled by {'attention' if vision.get('attentional_pool') else vision['pool_type']}"
                " (CLAMP's dense projector needs class-token pooling)"
            )
        if vision.get("patch_dropout"):
            problems.append("patch dropout (it drops grid cells)")
    if problems:
        raise UnsupportedBackboneError(
            f"CLIP arch {arch!r} is not supported: it has {'; '.join(problems)}. Supported families: "
            f"{', '.join(FAMILIES)} (e.g. {_EXAMPLES})."
        )


def backbone_family(arch: str, **overrides: Any) -> str:
    """The dense-adapter family of ``arch`` (one of :data:`FAMILIES`), after the support checks."""
    arch = arch.replace("/", "-")
    cfg = _base_config(arch, overrides)
    check_supported(arch, cfg)
    vision = cfg["vision_cfg"]
    if vision.get("timm_model_name"):
        return _timm_trunk_info(vision)["family"]
    return "modified_resnet" if isinstance(vision.get("layers"), (list, tuple)) else "vit"


def vision_stride(arch: str, **overrides: Any) -> int:
    """Input pixels per cell of the vision tower's last feature map (32 for ResNets, the ViT patch size)."""
    vision = _base_config(arch.replace("/", "-"), overrides)["vision_cfg"]
    if vision.get("timm_model_name"):
        return _timm_trunk_info(vision)["stride"]
    if isinstance(vision.get("layers"), (list, tuple)):
        return 32
    return int(vision.get("patch_size") or 16)


def default_input_size(stride: int, target: int = 256) -> int:
    """The square input of a new backbone: the stride multiple whose grid is the power of two nearest
    ``target`` / stride (256 px for strides 16 and 32, 224 px for patch 14 as the official ViT-L/14)."""
    return stride * 2 ** round(math.log2(target / stride))


_TIMM_ARGS = ("timm_model_name", "timm_pool", "timm_proj", "timm_proj_bias")


def _timm_trunk_info(vision: dict[str, Any]) -> dict[str, Any]:
    return _timm_trunk_info_cached(*(vision.get(k) for k in _TIMM_ARGS))


@functools.lru_cache(maxsize=64)
def _timm_trunk_info_cached(name: str, pool: str | None, proj: str | None, proj_bias: bool | None) -> dict[str, Any]:
    """Type, stride and pooling of open_clip's timm tower, built on the meta device (no memory, no init)."""
    from open_clip.timm_model import TimmModel
    from timm.models.convnext import ConvNeXt
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    pool = "avg" if pool is None else pool
    proj = "linear" if proj is None else proj
    try:
        with torch.device("meta"):
            tower = TimmModel(name, embed_dim=8, pool=pool, proj=proj, proj_bias=bool(proj_bias))
    except Exception as exc:  # timm reports unknown names and bad kwargs with several types
        raise UnsupportedBackboneError(f"timm cannot build the vision trunk {name!r}: {exc}") from None
    trunk = tower.trunk
    global_pool = getattr(trunk, "global_pool", None)
    family = None
    if pool in ("abs_attn", "rot_attn"):
        global_pool = pool
    elif (
        isinstance(trunk, (Eva, VisionTransformer))
        and getattr(trunk, "attn_pool", None) is None
        and global_pool in ("token", "avg")
    ):
        family = "timm_vit"
    elif isinstance(trunk, ConvNeXt):
        family = "timm_convnext"
        global_pool = getattr(trunk.head.global_pool, "pool_type", None)
    return {
        "type": type(trunk).__name__,
        "family": family,
        "pool": global_pool,
        "stride": int(trunk.feature_info[-1]["reduction"]),
    }


def _set_timm_input_size(visual: nn.Module, image_size: int) -> None:
    """Set a timm trunk's input resolution (patch grid, position table and RoPE grid) to ``image_size``."""
    trunk = visual.trunk
    if (
        hasattr(trunk, "set_input_size")
        and hasattr(trunk, "patch_embed")
        and tuple(trunk.patch_embed.img_size) != (image_size, image_size)
    ):
        trunk.set_input_size(img_size=(image_size, image_size))
    visual.image_size = (image_size, image_size)
