"""Named model configs and ``create_model(name)``, in the style of open_clip / timm.

A registered config is architecture only, as the official CLAMP configs define it
(``official_code_facts.md`` Sec. 1): input 256 (ViT-L/14: 224), heatmap 64, score-map upsampler deconv
channels RN50 256 / ViT K. Training defaults (the per-backbone loss weights and backbone learning-rate
multiplier) are the trainer's, in ``conf/backbone/*.yaml``. Names follow one rule, ``<kind>_<backbone>``.
The ``tiny_*`` configs use the random-weight tiny open_clip configs of :mod:`clamp.models.clip_backbone`
at 64 px for tests and the offline demo.

Beyond the registry, any supported open_clip architecture (:mod:`clamp.models.clip_backbone`) is built
by kind and backbone: ``create_model("clamp", backbone="EVA02-B-16")``, or by the name
``"<kind>_openclip:<ARCH>"`` that the Hydra ``backbone=openclip`` group composes
(``clamp_openclip:EVA02-B-16``). Their architecture follows the official one by family: input the
stride multiple nearest 256 px with a power-of-two grid (:func:`~clamp.models.clip_backbone.default_input_size`:
256 px for strides 32 and 16, 224 px for patch 14), heatmap 64, keypoint-head deconvs 256, score-map
upsampler deconvs 256 for convolutional towers (RN50's) and K for ViTs, context decoder width 256.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from open_clip.transformer import QuickGELU

from clamp.errors import ClampError, did_you_mean
from clamp.keypoints import KeypointSpec, get_keypoint_spec
from clamp.model_hub import HubModelError, is_hub_id
from clamp.models.clip_backbone import (
    CONV_FAMILIES,
    backbone_family,
    default_input_size,
    load_open_clip,
    text_tower,
    vision_stride,
)
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
    "clamp_tiny_rn": ModelConfig(
        "clamp", "tiny-rn", 64, 16, deconv_channels=32, spatial_deconv_channels=32, decoder_width=64
    ),
    "clamp_tiny_vit": ModelConfig("clamp", "tiny-vit", 64, 16, deconv_channels=32, decoder_width=64),
    "simplebaseline_tiny_rn": ModelConfig("simplebaseline", "tiny-rn", 64, 16, deconv_channels=32),
    "simplebaseline_tiny_vit": ModelConfig("simplebaseline", "tiny-vit", 64, 16, deconv_channels=32),
    "simplebaseline_tiny_rn_imagenet": ModelConfig("simplebaseline", IMAGENET_TINY_RESNET, 64, 16, deconv_channels=32),
}

KINDS = ("clamp", "simplebaseline")
#: ``<kind>_openclip:<ARCH>``: the name of a model on any supported open_clip architecture.
OPENCLIP_NAME = "{kind}_openclip:{arch}"
_OPENCLIP_INFIX = "_openclip:"

_COMMON_OVERRIDES = (
    "input_size",
    "heatmap_size",
    "num_deconv",
    "deconv_channels",
    "quick_gelu",
    "backbone_overrides",
    "drop_path_rate",
)
_CLAMP_OVERRIDES = _COMMON_OVERRIDES + (
    "prompt_source",
    "num_context",
    "context_length",
    "use_prompt_encoder",
    "prompt_encoder_heads",
    "decoder_width",
    "decoder_heads",
    "decoder_layers",
    "decoder_dropout",
    "gamma_init",
    "spatial_upsample",
    "spatial_deconv_channels",
    "logit_scale_init",
)


def list_models() -> list[str]:
    """Registered names accepted by :func:`create_model` (any open_clip arch: ``create_model(kind, backbone=)``)."""
    return sorted(_REGISTRY)


def _config(name: str, backbone: str | None = None, backbone_overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """The registered config of ``name``, or the family-default config of ``kind`` on ``backbone``."""
    if name in _REGISTRY:
        if backbone is not None:
            raise TypeError(
                f"create_model('{name}'): a registered model fixes its backbone "
                f"({_REGISTRY[name].backbone}); for another one use create_model("
                f"'{_REGISTRY[name].kind}', backbone={backbone!r})"
            )
        return _REGISTRY[name]
    kind, arch = name, backbone
    if _OPENCLIP_INFIX in name:
        kind, _, arch = name.partition(_OPENCLIP_INFIX)
        if backbone is not None and backbone != arch:
            raise TypeError(f"create_model('{name}'): the name says backbone {arch!r}, backbone= says {backbone!r}")
    if kind not in KINDS or (name in KINDS and backbone is None) or not arch:
        hint = (
            f"; the kinds {list(KINDS)} need backbone=<open_clip arch>"
            if name in KINDS
            else f"; any open_clip architecture: create_model('clamp', backbone='RN101') or "
            f"'{OPENCLIP_NAME.format(kind='clamp', arch='RN101')}'"
        )
        raise UnknownModelError(
            f"Unknown model '{name}'{did_you_mean(name, _REGISTRY)}. Available models: {', '.join(list_models())}{hint}"
        ) from None
    overrides = dict(backbone_overrides or {})
    family = backbone_family(arch, **overrides)
    stride = vision_stride(arch, **overrides)
    return ModelConfig(
        kind, arch, default_input_size(stride), 64, spatial_deconv_channels=256 if family in CONV_FAMILIES else None
    )


def model_defaults(name: str, backbone: str | None = None) -> dict[str, Any]:
    """The architecture of ``name`` (on ``backbone`` for a bare kind): kind, backbone, input and heatmap size."""
    cfg = _config(name, backbone)
    return {"kind": cfg.kind, "backbone": cfg.backbone, "input_size": cfg.input_size, "heatmap_size": cfg.heatmap_size}


def _heatmap_size(cfg: ModelConfig, input_size: int) -> int:
    """The registered heatmap size, scaled with an overridden input size (ViT-L: 224 -> 64)."""
    size = cfg.heatmap_size * input_size / cfg.input_size
    if not size.is_integer():
        raise ValueError(
            f"input_size={input_size} gives a non-integer default heatmap size {size}; pass heatmap_size explicitly"
        )
    return int(size)


DEFAULT_KEYPOINTS = "ap10k"


def create_model(
    name: str,
    pretrained: str | None = None,
    keypoints: str | KeypointSpec | Mapping[str, Any] | None = None,
    *,
    backbone: str | None = None,
    **overrides: Any,
) -> PoseModel:
    """Build a registered model, or a CLAMP / SimpleBaseline on any supported open_clip architecture.

    Args:
        name: one of :func:`list_models`; or a kind, ``"clamp"`` / ``"simplebaseline"``, with ``backbone``;
            or ``"<kind>_openclip:<ARCH>"`` (what ``backbone=openclip`` composes in Hydra).
        pretrained: backbone weights: ``None`` (random), an open_clip tag (``"openai"``) or a CLIP weight
            file for CLIP backbones; ``"imagenet"`` or a torchvision state-dict file for the ImageNet
            ResNet-50. CLIP weights fill both the image and the (frozen) text tower. Or a whole trained
            model on the Hugging Face Hub, ``"hf-hub:ORG/NAME"`` (``@REVISION`` optional; an export of
            ``python -m clamp.export format=hub``, see :mod:`clamp.model_hub`): its recipe is rebuilt and
            its weights loaded, in eval mode; ``name``, ``keypoints``, ``backbone`` and ``overrides``
            may be given only as that recipe has them.
        keypoints: a registered :class:`KeypointSpec` name, a spec, or its dict form (default ``"ap10k"``;
            for an ``hf-hub:`` model, its own).
        backbone: with a bare kind: an open_clip architecture (``"RN101"``, ``"ViT-B-32"``,
            ``"ViT-L-14-336"``, ``"convnext_base"``, ``"EVA02-B-16"``, ...; see
            :func:`clamp.models.clip_backbone.backbone_family`) or a tiny config name.
        **overrides: constructor options, e.g. ``input_size`` (int, square), ``heatmap_size``,
            ``use_prompt_encoder``, ``spatial_upsample``, ``prompt_source``, ``num_context``;
            ``drop_path_rate`` (stochastic depth of a CLIP ViT in training, linear over the blocks);
            ``backbone_overrides`` (open_clip config keys merged into the architecture's, e.g.
            ``{"embed_dim": 64, "vision_cfg": {"width": 64, "layers": 2}}``); an unknown key raises with
            the list of valid ones.

    Returns:
        The model, with ``model.config`` = ``{"name", "keypoints", ["backbone",] **overrides}`` such that
        ``create_model(**model.config)`` rebuilds the architecture (weights then come from a checkpoint).
    """
    if is_hub_id(pretrained):
        return _from_hub(name, str(pretrained), keypoints, backbone, overrides)
    backbone_overrides = overrides.get("backbone_overrides") or {}
    if not isinstance(backbone_overrides, Mapping):
        raise TypeError(
            f"create_model('{name}'): backbone_overrides must be a dict of open_clip config keys, "
            f"got {type(backbone_overrides).__name__}"
        )
    cfg = _config(name, backbone, backbone_overrides)
    allowed = _CLAMP_OVERRIDES if cfg.kind == "clamp" else _COMMON_OVERRIDES
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"create_model('{name}'): unknown option(s) {unknown}; valid options: {sorted(allowed)}")
    spec = get_keypoint_spec(DEFAULT_KEYPOINTS if keypoints is None else keypoints)
    opts = dict(overrides)
    opts.pop("backbone_overrides", None)
    input_size = opts.pop("input_size", cfg.input_size)
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(f"create_model('{name}'): input_size must be an int (square input), got {input_size!r}")
    heatmap_size = opts.pop("heatmap_size", None) or _heatmap_size(cfg, input_size)
    quick_gelu = opts.pop("quick_gelu", None)
    drop_path_rate = float(opts.pop("drop_path_rate", 0.0))
    opts.setdefault("deconv_channels", cfg.deconv_channels)
    config: dict[str, Any] = {"name": name, "keypoints": spec.to_dict(), **overrides}
    if name in KINDS:
        config["backbone"] = cfg.backbone

    if cfg.backbone in (IMAGENET_RESNET50, IMAGENET_TINY_RESNET):
        if quick_gelu is not None or backbone_overrides or drop_path_rate:
            raise TypeError(
                f"create_model('{name}'): quick_gelu, backbone_overrides and drop_path_rate apply to CLIP "
                "backbones only"
            )
        image_encoder = ImageNetResNet50(weights=pretrained, tiny=cfg.backbone == IMAGENET_TINY_RESNET)
        clip_model = None
    else:
        clip_kwargs = {**backbone_overrides, **({} if quick_gelu is None else {"quick_gelu": bool(quick_gelu)})}
        clip_model = load_open_clip(cfg.backbone, pretrained, image_size=input_size, **clip_kwargs)
        image_encoder = build_clip_image_encoder(clip_model, drop_path_rate=drop_path_rate)
        # Record the activation actually built (a tag may set it) so that a rebuild matches the weights.
        config["quick_gelu"] = isinstance(text_tower(clip_model).transformer.resblocks[0].mlp.gelu, QuickGELU)

    if cfg.kind == "clamp":
        opts.setdefault("spatial_deconv_channels", cfg.spatial_deconv_channels)
        opts.setdefault("decoder_width", cfg.decoder_width)
        text_encoder = None
        if opts.get("prompt_source", "text") == "text":
            text_encoder = FrozenTextEncoder(clip_model, context_length=opts.get("context_length", CONTEXT_LENGTH))
        model: PoseModel = CLAMP(
            image_encoder, spec, text_encoder=text_encoder, input_size=input_size, heatmap_size=heatmap_size, **opts
        )
    else:
        model = SimpleBaseline(image_encoder, spec, input_size=input_size, heatmap_size=heatmap_size, **opts)
    model.config = config
    logger.debug(
        "created %s (%s, pretrained=%s, %d keypoints, input %d, heatmap %d)",
        name,
        cfg.backbone,
        pretrained,
        spec.num_keypoints,
        input_size,
        heatmap_size,
    )
    return model


def _from_hub(
    name: str,
    source: str,
    keypoints: str | KeypointSpec | Mapping[str, Any] | None,
    backbone: str | None,
    overrides: Mapping[str, Any],
) -> PoseModel:
    """``create_model(name, pretrained="hf-hub:...")``: the Hub model, if the arguments fit its recipe."""
    from clamp.checkpoint import build_model
    from clamp.predictor import read_export

    export = read_export(source)
    recipe = export.record["model"]
    given = dict(overrides, name=name, **({} if backbone is None else {"backbone": backbone}))
    differ = sorted(key for key, value in given.items() if recipe.get(key) != value)
    if keypoints is not None and get_keypoint_spec(keypoints) != get_keypoint_spec(recipe["keypoints"]):
        differ.append("keypoints")
    if differ:
        stored = {key: recipe["keypoints"].get("name") if key == "keypoints" else recipe.get(key) for key in differ}
        has = ", ".join(f"{key}={value!r}" if key in recipe else f"no {key} option" for key, value in stored.items())
        raise HubModelError(
            f"create_model({name!r}, pretrained={source!r}): the model there has {has}; "
            f"call create_model({recipe['name']!r}, pretrained={source!r}) with no other options"
        )
    return build_model(export.record, export.weights, export.weights_source)
