"""CLAMP on any open_clip backbone: every family builds, trains, loads weights and rebuilds; SigLIP fails fast.

The default suite shrinks each family through config overrides (``backbone_overrides``): widths and
layers for open_clip's own towers, the smallest timm model of the family for timm trunks (open_clip
passes no width or depth to timm). Full-size forwards are ``slow``.
"""

from __future__ import annotations

import copy
import json
import socket
import time
import urllib.request

import huggingface_hub.constants
import open_clip
import pytest
import torch

from clamp.checkpoint import build_model, make_record
from clamp.errors import ClampError
from clamp.lightning.optim import parameter_groups
from clamp.models import CLAMP, SimpleBaseline, create_model, list_models, model_defaults
from clamp.models.clip_backbone import (
    HubTokenizerError,
    UnsupportedBackboneError,
    backbone_family,
    load_open_clip,
    text_tower,
    vision_stride,
)
from clamp.models.image_encoders import DenseCLIPResNet, DenseCLIPViT, DenseTimmConvNeXt, DenseTimmViT
from clamp.models.weight_files import resize_grid_embedding
from tests.test_models import make_batch, training_loss

TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
#: family -> (open_clip arch, overrides that shrink it, input size, dense encoder type)
FAMILIES = {
    "modified_resnet": (
        "RN101",
        {"embed_dim": 64, "text_cfg": TINY_TEXT, "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 64}},
        64,
        DenseCLIPResNet,
    ),
    "vit": (
        "ViT-B-32",
        {"embed_dim": 64, "text_cfg": TINY_TEXT, "vision_cfg": {"layers": 2, "width": 64, "head_width": 32}},
        64,
        DenseCLIPViT,
    ),
    "timm_convnext": (
        "convnext_base",
        {
            "embed_dim": 64,
            "text_cfg": TINY_TEXT,
            "vision_cfg": {"timm_model_name": "convnext_atto", "timm_drop_path": 0.0},
        },
        64,
        DenseTimmConvNeXt,
    ),
    "timm_vit": (
        "EVA02-B-16",
        {"embed_dim": 64, "text_cfg": TINY_TEXT, "vision_cfg": {"timm_model_name": "eva02_tiny_patch14_224"}},
        56,
        DenseTimmViT,
    ),
}
TINY_HEADS = {"heatmap_size": 16, "deconv_channels": 32}
TINY_CLAMP = {**TINY_HEADS, "spatial_deconv_channels": 32, "decoder_width": 64}
PAPER_NAMES = [
    "clamp_rn50",
    "clamp_tiny_rn",
    "clamp_tiny_vit",
    "clamp_vitb16",
    "clamp_vitl14",
    "simplebaseline_rn50",
    "simplebaseline_rn50_imagenet",
    "simplebaseline_tiny_rn",
    "simplebaseline_tiny_rn_imagenet",
    "simplebaseline_tiny_vit",
    "simplebaseline_vitb16",
    "simplebaseline_vitl14",
]


def tiny_model(family: str, kind: str = "clamp", seed: int = 0, **extra):
    arch, overrides, size, _ = FAMILIES[family]
    torch.manual_seed(seed)
    heads = TINY_CLAMP if kind == "clamp" else TINY_HEADS
    return create_model(kind, backbone=arch, backbone_overrides=overrides, input_size=size, **heads, **extra)


def tiny_clip(family: str, size: int | None = None, seed: int = 0):
    arch, overrides, default_size, _ = FAMILIES[family]
    torch.manual_seed(seed)
    model = load_open_clip(arch, None, image_size=size or default_size, **overrides)
    with torch.no_grad():  # BN statistics are part of the state too
        for name, buffer in model.named_buffers():
            if "running" in name:
                buffer.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def clamp_model(family) -> CLAMP:
    """The family's tiny CLAMP (shared: tests that change it work on a deep copy)."""
    return tiny_model(family)


@pytest.fixture(scope="module")
def baseline_model(family) -> SimpleBaseline:
    return tiny_model(family, kind="simplebaseline")


def _images(model, batch: int = 2, seed: int = 0) -> torch.Tensor:
    w, h = model.input_size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---- every family builds and trains ------------------------------------------------------------------
def test_every_family_builds_at_random_init_and_trains_one_step(family, clamp_model):
    model = copy.deepcopy(clamp_model).train()
    assert isinstance(model.image_encoder, FAMILIES[family][3])
    assert backbone_family(FAMILIES[family][0], **FAMILIES[family][1]) == family
    batch = make_batch(model)
    losses = training_loss(model, batch)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_spatial"] > 0 and losses["loss_feature"] > 0
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"trainable parameters without a gradient: {missing}"
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    torch.optim.AdamW(parameter_groups(model, 1e-3, 1e-4, 0.1)).step()
    changed = {n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert {n.split(".")[0] for n in changed} >= {
        "image_encoder",
        "keypoint_head",
        "prompt_learner",
        "context_decoder",
        "spatial_head",
    }


def test_every_family_has_a_simplebaseline_that_never_runs_the_frozen_projector(baseline_model):
    model = copy.deepcopy(baseline_model).train()
    assert isinstance(model, SimpleBaseline)
    projector = model.image_encoder.projector_parameters()
    assert projector and not any(p.requires_grad for p in projector)
    training_loss(model, make_batch(model))["loss"].backward()
    assert all(p.grad is None for p in projector)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_stride_and_grid_are_derived_from_the_encoder(family, clamp_model):
    arch, overrides, size, _ = FAMILIES[family]
    stride = vision_stride(arch, **overrides)
    assert (
        clamp_model.feature_stride
        == clamp_model.image_encoder.stride
        == stride
        == {"modified_resnet": 32, "vit": 32, "timm_convnext": 32, "timm_vit": 14}[family]
    )
    clamp_model.eval()
    with torch.no_grad():
        feats = clamp_model.image_encoder(_images(clamp_model))
    grid = size // stride
    assert feats.features.shape == (2, clamp_model.image_encoder.feature_channels, grid, grid)
    assert feats.dense.shape == (2, clamp_model.image_encoder.embed_dim, grid, grid)
    assert feats.global_embedding.shape == (2, clamp_model.image_encoder.embed_dim)


def test_global_embedding_is_the_towers_own_pooled_output(family):
    clip = tiny_clip(family).eval()
    encoder = FAMILIES[family][3](clip.visual)
    images = torch.randn(2, 3, FAMILIES[family][2], FAMILIES[family][2])
    with torch.no_grad():
        torch.testing.assert_close(encoder(images).global_embedding, clip.encode_image(images), rtol=1e-5, atol=1e-5)


def test_timm_vit_dense_map_is_the_projection_of_each_patch_token():
    clip = tiny_clip("timm_vit").eval()
    encoder = DenseTimmViT(clip.visual)
    trunk = clip.visual.trunk
    images = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        feats = encoder(images)
        tokens = trunk.forward_features(images)  # normed tokens, class token first
        # The class token through the same projection is the global embedding (token pooling) ...
        torch.testing.assert_close(trunk.head(tokens[:, 0]), feats.global_embedding)
        # ... and each patch token through it is the dense map, in grid order.
        expected = trunk.head(tokens[:, 1:]).transpose(1, 2).reshape(1, -1, 4, 4)
        torch.testing.assert_close(feats.dense, expected)
        # F_origin is the last block's patch tokens before the final norm.
        torch.testing.assert_close(trunk.norm(feats.features.flatten(2).transpose(1, 2)), tokens[:, 1:])


def test_convnext_dense_map_is_the_head_at_every_position():
    clip = tiny_clip("timm_convnext").eval()
    encoder = DenseTimmConvNeXt(clip.visual)
    trunk = clip.visual.trunk
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = encoder(images)
        torch.testing.assert_close(feats.features, trunk.forward_features(images))
        # One position's feature vector, as a 1x1 map, through the pooled head = that position's dense vector.
        cell = feats.features[:, :, 1:2, 0:1]
        torch.testing.assert_close(clip.visual.head(trunk.forward_head(cell)), feats.dense[:, :, 1, 0])


# ---- weights and checkpoints ------------------------------------------------------------------------
def test_weight_file_round_trips_through_each_family_loader(family, tmp_path):
    arch, overrides, size, _ = FAMILIES[family]
    reference = tiny_clip(family, seed=1)
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    loaded = load_open_clip(arch, str(tmp_path / "w.pt"), image_size=size, **overrides)
    assert loaded.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pretrained_file_fills_the_pose_models_image_encoder_and_text_tower(tmp_path):
    arch, overrides, size, _ = FAMILIES["timm_convnext"]
    reference = tiny_clip("timm_convnext", seed=1)
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    model = create_model(
        "clamp",
        backbone=arch,
        pretrained=str(tmp_path / "w.pt"),
        backbone_overrides=overrides,
        input_size=size,
        **TINY_CLAMP,
    )
    visual = {k[len("visual.") :]: v for k, v in reference.state_dict().items() if k.startswith("visual.")}
    for key, value in visual.items():
        assert torch.equal(model.image_encoder.visual.state_dict()[key], value), key
    assert torch.equal(model.text_encoder.token_embedding.weight, text_tower(reference).token_embedding.weight)


def test_timm_position_table_trained_at_another_size_is_resized_bilinearly(tmp_path):
    arch, overrides, _, _ = FAMILIES["timm_vit"]
    small = tiny_clip("timm_vit", size=56)
    torch.save(small.state_dict(), tmp_path / "w56.pt")
    big = load_open_clip(arch, str(tmp_path / "w56.pt"), image_size=112, **overrides)
    table = small.state_dict()["visual.trunk.pos_embed"][0]
    expected = resize_grid_embedding(table, (8, 8), prefix=1)
    assert big.visual.trunk.pos_embed.shape == (1, 65, table.shape[1])
    torch.testing.assert_close(big.visual.trunk.pos_embed[0], expected)
    torch.testing.assert_close(big.visual.trunk.pos_embed[0, 0], table[0])  # class position kept


def test_clip_layout_weights_load_into_a_custom_text_model(tmp_path):
    """EVA02 configs build open_clip's CustomTextCLIP (text under ``text.``); a CLIP-layout file still loads."""
    arch, overrides, size, _ = FAMILIES["timm_vit"]
    reference = tiny_clip("timm_vit", seed=2)
    assert isinstance(reference, open_clip.CustomTextCLIP)
    flat = {(k[len("text.") :] if k.startswith("text.") else k): v for k, v in reference.state_dict().items()}
    torch.save(flat, tmp_path / "clip_layout.pt")
    loaded = load_open_clip(arch, str(tmp_path / "clip_layout.pt"), image_size=size, **overrides)
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("kind", ["clamp", "simplebaseline"])
def test_checkpoint_style_rebuild_from_model_config_gives_identical_heatmaps(family, kind, clamp_model, baseline_model):
    model = (clamp_model if kind == "clamp" else baseline_model).eval()
    record = make_record(model, {"pretrained": None})
    json.dumps(record)  # the recipe is plain data, as checkpoints (weights_only) need
    rebuilt = build_model(record, model.state_dict(), "test")  # what clamp.load_model does
    images = _images(model, seed=4)
    with torch.no_grad():
        assert torch.equal(rebuilt(images).heatmaps, model(images).heatmaps)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert rebuilt.config == model.config and rebuilt.config["backbone"] == FAMILIES[family][0]


def test_openclip_name_form_builds_the_same_network_as_kind_and_backbone():
    arch, overrides, size, _ = FAMILIES["vit"]
    by_kind = tiny_model("vit", seed=5).eval()
    torch.manual_seed(5)
    by_name = create_model(f"clamp_openclip:{arch}", backbone_overrides=overrides, input_size=size, **TINY_CLAMP).eval()
    assert by_name.config["name"] == "clamp_openclip:ViT-B-32" and "backbone" not in by_name.config
    by_name.load_state_dict(by_kind.state_dict(), strict=True)
    images = _images(by_kind)
    with torch.no_grad():
        assert torch.equal(by_name(images).heatmaps, by_kind(images).heatmaps)
    rebuilt = create_model(**by_name.config)
    assert rebuilt.state_dict().keys() == by_name.state_dict().keys()


def test_registered_paper_names_are_kept_and_equal_their_kind_and_backbone_form():
    assert list_models() == PAPER_NAMES
    registered = create_model("clamp_tiny_rn")
    general = create_model(
        "clamp",
        backbone="tiny-rn",
        input_size=64,
        heatmap_size=16,
        deconv_channels=32,
        spatial_deconv_channels=32,
        decoder_width=64,
    )
    shapes = {k: v.shape for k, v in general.state_dict().items()}
    assert {k: v.shape for k, v in registered.state_dict().items()} == shapes
    assert "backbone" not in registered.config
    with pytest.raises(TypeError, match="fixes its backbone"):
        create_model("clamp_rn50", backbone="RN101")


@pytest.mark.parametrize(
    ("arch", "input_size", "spatial"),
    [
        ("RN101", 256, 256),
        ("RN50x4", 256, 256),
        ("ViT-B-32", 256, None),
        ("ViT-L-14-336", 224, None),
        ("convnext_base", 256, 256),
        ("EVA02-B-16", 256, None),
        ("EVA02-L-14", 224, None),
    ],
)
def test_default_geometry_follows_the_encoder_family(arch, input_size, spatial):
    from clamp.models.factory import _config

    defaults = model_defaults("clamp", arch)
    assert (defaults["input_size"], defaults["heatmap_size"], defaults["backbone"]) == (input_size, 64, arch)
    assert _config("clamp", arch).spatial_deconv_channels == spatial


def test_unknown_kind_or_missing_backbone_lists_the_ways_to_name_a_model():
    with pytest.raises(ValueError, match="need backbone="):
        create_model("clamp")
    with pytest.raises(ValueError, match=r"Unknown model 'pose_openclip:RN101'.*backbone='RN101'"):
        create_model("pose_openclip:RN101")
    with pytest.raises(ValueError, match="unknown CLIP arch 'RN49'"):
        create_model("clamp", backbone="RN49")


# ---- what is refused, and how fast ------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize(
    ("arch", "tag", "tokenizer"),
    [
        ("ViT-B-16-SigLIP", "webli", "timm/ViT-B-16-SigLIP"),
        ("ViT-B-16-SigLIP2", "webli", "timm/ViT-B-16-SigLIP2"),
    ],
)
def test_offline_siglip_fails_fast_with_one_clear_message(monkeypatch, no_network, arch, tag, tokenizer):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(HubTokenizerError) as info:
        create_model("clamp", backbone=arch, pretrained=tag)
    assert time.monotonic() - start < 1.0
    assert isinstance(info.value, ClampError)
    message = str(info.value)
    assert "\n" not in message
    for needle in (
        repr(arch),
        repr(tokenizer),
        "Hugging Face hub",
        "offline (HF_HUB_OFFLINE is set)",
        "nothing was downloaded",
        "EVA02-B-16",
    ):
        assert needle in message, needle


def test_siglip_fails_at_once_without_the_offline_flag_too(monkeypatch, no_network):
    """The hub is never asked (unreachable or not): the tokenizer check runs before any I/O."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(HubTokenizerError, match="Hugging Face hub") as info:
        load_open_clip("ViT-SO400M-14-SigLIP", "webli", image_size=224)
    assert time.monotonic() - start < 1.0 and "offline" not in str(info.value)


@pytest.mark.parametrize(
    ("arch", "problem"),
    [
        ("PE-Core-B-16", "global pool 'map'"),
        ("swin_base_patch4_window7_224", "SwinTransformer"),
        ("coca_ViT-B-32", "CoCa"),
        ("MobileCLIP-S1", "FastVit"),
    ],
)
def test_unsupported_designs_are_refused_naming_the_problem(no_network, arch, problem):
    with pytest.raises(UnsupportedBackboneError, match=problem):
        create_model("clamp", backbone=arch, pretrained="openai")


# ---- Hydra -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["clamp", "simplebaseline"])
def test_openclip_backbone_group_composes_with_models_and_experiments(kind):
    from tests.helpers import compose_train

    cfg = compose_train(
        [
            f"model={kind}",
            "backbone=openclip",
            "backbone.arch=EVA02-B-16",
            "backbone.pretrained=/w/EVA02-B-16.safetensors",
        ]
    )
    assert cfg.model.name == f"{kind}_openclip:EVA02-B-16" and cfg.model.pretrained == "/w/EVA02-B-16.safetensors"
    assert (cfg.loss.get("alpha_spatial", 2.0), cfg.optimizer.backbone_lr_mult) == (2.0, 0.1)
    paper = compose_train(
        [
            "+experiment=supervised",
            "backbone=openclip",
            "backbone.arch=convnext_base",
            "backbone.alpha_spatial=0.4",
            "backbone.lr_mult=1.0",
        ]
    )
    assert paper.model.name == "clamp_openclip:convnext_base" and paper.data.batch_size == 128
    assert (paper.loss.alpha_spatial, paper.optimizer.backbone_lr_mult) == (0.4, 1.0)


def test_openclip_backbone_config_trains_through_the_lightning_module():
    from omegaconf import OmegaConf

    from clamp.lightning.module import PoseEstimationModule
    from tests.helpers import compose_train

    arch, overrides, size, _ = FAMILIES["timm_convnext"]
    cfg = compose_train(["backbone=openclip", f"backbone.arch={arch}"])
    cfg.model.overrides = {"backbone_overrides": overrides, "input_size": size, **TINY_CLAMP}  # tiny, as tests do
    module = PoseEstimationModule(
        **{
            k: OmegaConf.to_container(cfg[k], resolve=True)
            for k in ("model", "loss", "optimizer", "scheduler", "evaluation")
        }
    )
    assert isinstance(module.model.image_encoder, DenseTimmConvNeXt)
    assert module.model.config["name"] == "clamp_openclip:convnext_base"
    loss = module.training_step({**make_batch(module.model), "image_id": torch.tensor([1, 2])}, 0)
    assert torch.isfinite(loss)


# ---- GPU-path switches, checked on the CPU -------------------------------------------------------------
# bf16 convolutions are slow on CPUs (seconds for the tiny timm towers): those two run in the slow suite.
@pytest.mark.parametrize(
    "name",
    [
        "modified_resnet",
        "vit",
        pytest.param("timm_convnext", marks=pytest.mark.slow),
        pytest.param("timm_vit", marks=pytest.mark.slow),
    ],
)
def test_bf16_autocast_training_step_is_finite_and_close_to_fp32(name):
    model = tiny_model(name, seed=6).train()
    batch = make_batch(model)
    with torch.no_grad():
        torch.manual_seed(0)
        reference = model.eval()(batch["image"]).heatmaps
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batch["image"]).heatmaps
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).abs().max() <= 0.05 * reference.abs().max() + 1e-3
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = training_loss(model, batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_channels_last_gives_the_same_heatmaps(clamp_model):
    model = copy.deepcopy(clamp_model).eval()
    images = _images(model)
    with torch.no_grad():
        reference = model(images).heatmaps
        model.to(memory_format=torch.channels_last)
        nhwc = model(images.contiguous(memory_format=torch.channels_last)).heatmaps
    torch.testing.assert_close(nhwc, reference, rtol=1e-4, atol=1e-5)


def _module(model):
    from clamp.lightning.module import PoseEstimationModule

    return PoseEstimationModule(
        model=model,
        loss={"alpha_spatial": 0.4, "alpha_feature": 5e-4},
        optimizer={"lr": 1e-3, "weight_decay": 1e-4, "backbone_lr_mult": 1.0},
        scheduler={},
        evaluation={"flip_test": False},
    )


def test_compile_switch_keeps_state_dict_keys_modules_and_recipe():
    module = _module(tiny_model("vit"))
    keys, modules, recipe = list(module.state_dict()), [n for n, _ in module.named_modules()], dict(module.model.config)
    module.compile_model()
    assert list(module.state_dict()) == keys and [n for n, _ in module.named_modules()] == modules
    assert module.model.config == recipe and module._compiled is not None
    assert all(p is q for p, q in zip(module._compiled.parameters(), module.model.parameters(), strict=True))


@pytest.mark.slow
def test_compiled_network_trains_and_predicts_like_the_plain_one():
    torch._dynamo.reset()
    module = _module(tiny_model("modified_resnet", seed=8))
    batch = {**make_batch(module.model), "image_id": torch.tensor([1, 2])}
    module.model.eval()
    with torch.no_grad():
        eager = module.predict_heatmaps(batch["image"])
    module.compile_model()
    with torch.no_grad():
        compiled = module.predict_heatmaps(batch["image"])
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    module.model.train()
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and module.model.keypoint_head.final_layer.weight.grad is not None


# ---- full size -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "encoder", "feature_shape", "dense_shape"),
    [
        ("RN101", DenseCLIPResNet, (2048, 8, 8), (512, 8, 8)),
        ("RN50x4", DenseCLIPResNet, (2560, 8, 8), (640, 8, 8)),
        ("ViT-B-32", DenseCLIPViT, (768, 8, 8), (512, 8, 8)),
        ("ViT-L-14-336", DenseCLIPViT, (1024, 16, 16), (768, 16, 16)),
        ("convnext_base", DenseTimmConvNeXt, (1024, 8, 8), (512, 8, 8)),
        ("EVA02-B-16", DenseTimmViT, (768, 16, 16), (512, 16, 16)),
        ("vit_medium_patch16_gap_256", DenseTimmViT, (512, 16, 16), (512, 16, 16)),
    ],
)
def test_full_size_backbones_forward_with_the_expected_shapes(arch, encoder, feature_shape, dense_shape):
    model = create_model("clamp", backbone=arch).eval()
    assert isinstance(model.image_encoder, encoder)
    with torch.no_grad():
        out = model(_images(model, batch=1), return_aux=True)
        feats = model.image_encoder(_images(model, batch=1))
    assert tuple(feats.features.shape[1:]) == feature_shape and tuple(feats.dense.shape[1:]) == dense_shape
    assert out.heatmaps.shape == (1, 17, 64, 64) and torch.isfinite(out.heatmaps).all()
