"""Named model configs and ``create_model(name)``, in the style of open_clip / timm.

A registered config is architecture only, as the official CLAMP configs define it
(``official_code_facts.md`` Sec. 1): input 256 (ViT-L/14: 224), heatmap 64, score-map upsampler deconv
channels RN50 256 / ViT K. Training defaults (the per-backbone loss weights and backbone learning-rate
multiplier) are the trainer's, in ``conf/backbone/*.yaml``. Names follow one rule, ``<kind>_<backbone>``.
The ``tiny_*`` configs use the random-weight tiny open_clip configs of :mod:`clamp.models.clip_backbone`
at 64 px for tests and the offline demo.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from open_clip.transformer import QuickGELU

from clamp.errors import ClampError, did_you_mean
from clamp.keypoints import KeypointSpec, get_keypoint_spec
from clamp.models.clip_backbone import load_open_clip
from clamp.models.image_encoders import ImageNetResNet50, build_clip_image_encoder
from clamp.models.pose_models import CLAMP, PoseModel, SimpleBaseline
from clamp.models.text import CONTEXT_LENGTH, FrozenTextEncoder

logger = logging.getLogger(__name__)


class UnknownModelError(ClampError, ValueError):
    """A model name that is not in the registry."""

IMAGENET_RESNET50 = "imagenet-resnet50"
IMAGENET_TINY_RESNET = "imagenet-tiny-resnet"


@dataclass(frozen=True)
class ModelConfig:
    """One registered model's architecture: its kind, backbone and sizes."""

    kind: str  # "clamp" | "simplebaseline"
    backbone: str  # open_clip arch, a tiny config name, or IMAGENET_RESNET50
    input_size: int
    heatmap_size: int
    deconv_channels: int = 256
    spatial_deconv_channels: int | None = None  # None: K (official ViT upconv head)
    decoder_width: int = 256  # context decoder width (official 256; tiny models use their embed width)


_REGISTRY: dict[str, ModelConfig] = {
    "clamp_rn50": ModelConfig("clamp", "RN50", 256, 64, spatial_deconv_channels=256),
    "clamp_vitb16": ModelConfig("clamp", "ViT-B-16", 256, 64),
    "clamp_vitl14": ModelConfig("clamp", "ViT-L-14", 224, 64),
    "simplebaseline_rn50": ModelConfig("simplebaseline", "RN50", 256, 64),
    "simplebaseline_rn50_imagenet": ModelConfig("simplebaseline", IMAGENET_RESNET50, 256, 64),
    "simplebaseline_vitb16": ModelConfig("simplebaseline", "ViT-B-16", 256, 64),
    "simplebaseline_vitl14": ModelConfig("simplebaseline", "ViT-L-14", 224, 64),
    "clamp_tiny_rn": ModelConfig("clamp", "tiny-rn", 64, 16, deconv_channels=32, spatial_deconv_channels=32,
                                 decoder_width=64),
    "clamp_tiny_vit": ModelConfig("clamp", "tiny-vit", 64, 16, deconv_channels=32, decoder_width=64),
    "simplebaseline_tiny_rn": ModelConfig("simplebaseline", "tiny-rn", 64, 16, deconv_channels=32),
    "simplebaseline_tiny_vit": ModelConfig("simplebaseline", "tiny-vit", 64, 16, deconv_channels=32),
    "simplebaseline_tiny_rn_imagenet": ModelConfig("simplebaseline", IMAGENET_TINY_RESNET, 64, 16, deconv_channels=32),
}

_COMMON_OVERRIDES = ("input_size", "heatmap_size", "num_deconv", "deconv_channels", "quick_gelu")
_CLAMP_OVERRIDES = _COMMON_OVERRIDES + (
    "prompt_source", "num_context", "context_length", "use_prompt_encoder", "prompt_encoder_heads",
    "decoder_width", "decoder_heads", "decoder_layers", "decoder_dropout", "gamma_init", "spatial_upsample",
    "spatial_deconv_channels", "logit_scale_init",
)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def _config(name: str) -> ModelConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"Unknown model '{name}'{did_you_mean(name, _REGISTRY)}. Available models: "
                                f"{', '.join(list_models())}") from None


def model_defaults(name: str) -> dict[str, Any]:
    """The registered architecture of ``name`` (kind, backbone, input and heatmap size)."""
    cfg = _config(name)
    return {"kind": cfg.kind, "backbone": cfg.backbone, "input_size": cfg.input_size,
            "heatmap_size": cfg.heatmap_size}


def _heatmap_size(cfg: ModelConfig, input_size: int) -> int:
    """The registered heatmap size, scaled with an overridden input size (ViT-L: 224 -> 64)."""
    size = cfg.heatmap_size * input_size / cfg.input_size
    if not size.is_integer():
        raise ValueError(f"input_size={input_size} gives a non-integer default heatmap size {size}; "
                         "pass heatmap_size explicitly")
    return int(size)


def create_model(
    name: str,
    pretrained: str | None = None,
    keypoints: str | KeypointSpec | Mapping[str, Any] = "ap10k",
    **overrides: Any,
) -> PoseModel:
    """Build a registered model.

    Args:
        name: one of :func:`list_models`.
        pretrained: backbone weights: ``None`` (random), an open_clip tag (``"openai"``) or a CLIP weight
            file for CLIP backbones; ``"imagenet"`` or a torchvision state-dict file for the ImageNet
            ResNet-50. CLIP weights fill both the image and the (frozen) text tower.
        keypoints: a registered :class:`KeypointSpec` name, a spec, or its dict form.
        **overrides: constructor options, e.g. ``input_size`` (int, square), ``heatmap_size``,
            ``use_prompt_encoder``, ``spatial_upsample``, ``prompt_source``, ``num_context``; an unknown key
            raises with the list of valid ones.

    Returns:
        The model, with ``model.config`` = ``{"name", "keypoints", **overrides}`` such that
        ``create_model(**model.config)`` rebuilds the architecture (weights then come from a checkpoint).
    """
    cfg = _config(name)
    allowed = _CLAMP_OVERRIDES if cfg.kind == "clamp" else _COMMON_OVERRIDES
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(
            f"create_model('{name}'): unknown option(s) {unknown}; valid options: {sorted(allowed)}"
        )
    spec = get_keypoint_spec(keypoints)
    opts = dict(overrides)
    input_size = opts.pop("input_size", cfg.input_size)
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(
            f"create_model('{name}'): input_size must be an int (square input), got {input_size!r}"
        )
    heatmap_size = opts.pop("heatmap_size", None) or _heatmap_size(cfg, input_size)
    quick_gelu = opts.pop("quick_gelu", None)
    opts.setdefault("deconv_channels", cfg.deconv_channels)
    config: dict[str, Any] = {"name": name, "keypoints": spec.to_dict(), **overrides}

    if cfg.backbone in (IMAGENET_RESNET50, IMAGENET_TINY_RESNET):
        if quick_gelu is not None:
            raise TypeError(f"create_model('{name}'): quick_gelu applies to CLIP backbones only")
        image_encoder = ImageNetResNet50(weights=pretrained, tiny=cfg.backbone == IMAGENET_TINY_RESNET)
        clip_model = None
    else:
        clip_kwargs = {} if quick_gelu is None else {"quick_gelu": bool(quick_gelu)}
        clip_model = load_open_clip(cfg.backbone, pretrained, image_size=input_size, **clip_kwargs)
        image_encoder = build_clip_image_encoder(clip_model)
        # Record the activation actually built (a tag may set it) so that a rebuild matches the weights.
        config["quick_gelu"] = isinstance(clip_model.transformer.resblocks[0].mlp.gelu, QuickGELU)

    if cfg.kind == "clamp":
        opts.setdefault("spatial_deconv_channels", cfg.spatial_deconv_channels)
        opts.setdefault("decoder_width", cfg.decoder_width)
        text_encoder = None
        if opts.get("prompt_source", "text") == "text":
            text_encoder = FrozenTextEncoder(
                clip_model, context_length=opts.get("context_length", CONTEXT_LENGTH)
            )
        model: PoseModel = CLAMP(image_encoder, spec, text_encoder=text_encoder, input_size=input_size,
                                 heatmap_size=heatmap_size, **opts)
    else:
        model = SimpleBaseline(image_encoder, spec, input_size=input_size, heatmap_size=heatmap_size, **opts)
    model.config = config
    logger.debug("created %s (%s, pretrained=%s, %d keypoints, input %d, heatmap %d)", name, cfg.backbone,
                pretrained, spec.num_keypoints, input_size, heatmap_size)
    return model
