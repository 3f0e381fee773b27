"""Dense CLIP image encoders and the ImageNet ResNet-50 trunk: shapes, strides, agreement with open_clip."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
from torch import nn

from clamp.models.clip_backbone import TINY_CONFIGS, load_open_clip
from clamp.models.image_encoders import (
    DenseCLIPResNet,
    DenseCLIPViT,
    DropPathHook,
    ImageFeatures,
    ImageNetResNet50,
    build_clip_image_encoder,
)
from clamp.models.weight_files import PretrainedWeightsError, load_clip_state_dict


@pytest.fixture(scope="module")
def tiny_rn():
    torch.manual_seed(0)
    return load_open_clip("tiny-rn", None, image_size=64).eval()


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    return load_open_clip("tiny-vit", None, image_size=64).eval()


def _images(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))


@pytest.mark.parametrize("size", [64, 96])
def test_dense_resnet_grid_follows_input_size(tiny_rn, size):
    encoder = build_clip_image_encoder(tiny_rn)
    assert isinstance(encoder, DenseCLIPResNet)
    assert (encoder.feature_channels, encoder.embed_dim, encoder.stride) == (512, 64, 32)
    with torch.no_grad():
        out = encoder(_images(size))
    grid = size // 32
    assert isinstance(out, ImageFeatures)
    assert out.features.shape == (2, 512, grid, grid)
    assert out.dense.shape == (2, 64, grid, grid)
    assert out.global_embedding.shape == (2, 64)


@pytest.mark.parametrize("size", [64, 96])
def test_dense_vit_grid_follows_input_size(tiny_vit, size):
    encoder = build_clip_image_encoder(tiny_vit)
    assert isinstance(encoder, DenseCLIPViT)
    assert (encoder.feature_channels, encoder.embed_dim, encoder.stride) == (64, 64, 16)
    with torch.no_grad():
        out = encoder(_images(size))
    grid = size // 16
    assert out.features.shape == (2, 64, grid, grid)
    assert out.dense.shape == (2, 64, grid, grid)
    assert out.global_embedding.shape == (2, 64)


def test_resnet_global_embedding_is_clip_attention_pool_output(tiny_rn):
    images = _images(64)
    with torch.no_grad():
        out = DenseCLIPResNet(tiny_rn.visual)(images)
        expected = tiny_rn.visual(images)
    torch.testing.assert_close(out.global_embedding, expected, rtol=0, atol=1e-6)


def test_resnet_dense_map_is_attention_over_mean_and_all_positions(tiny_rn):
    """Reference: torch's MultiheadAttention with CLIP's attnpool weights over [mean; positions] + pos."""
    pool = tiny_rn.visual.attnpool
    mha = nn.MultiheadAttention(pool.k_proj.in_features, pool.num_heads, kdim=None, vdim=None)
    mha.out_proj = nn.Linear(pool.c_proj.in_features, pool.c_proj.out_features)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([pool.q_proj.weight, pool.k_proj.weight, pool.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]))
        mha.out_proj.load_state_dict(pool.c_proj.state_dict())
        out = DenseCLIPResNet(tiny_rn.visual)(_images(64))
        tokens = out.features.flatten(2).permute(2, 0, 1)
        tokens = torch.cat([tokens.mean(0, keepdim=True), tokens]) + pool.positional_embedding[:, None]
        reference, _ = mha(tokens, tokens, tokens, need_weights=False)
    torch.testing.assert_close(out.dense.flatten(2).permute(2, 0, 1), reference[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.global_embedding, reference[0], rtol=1e-5, atol=1e-5)


def test_resnet_position_table_interpolated_per_forward_matches_resized_checkpoint(tiny_rn):
    """Running the 64-px model on 96 px equals a 96-px model loaded from the 64-px weights."""
    model96 = load_open_clip("tiny-rn", None, image_size=96).eval()
    load_clip_state_dict(model96, tiny_rn.state_dict(), source="tiny-rn@64")
    images = _images(96)
    with torch.no_grad():
        out = DenseCLIPResNet(tiny_rn.visual)(images)
        expected = model96.visual(images)
        out96 = DenseCLIPResNet(model96.visual)(images)
    torch.testing.assert_close(out.global_embedding, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.dense, out96.dense, rtol=0, atol=1e-6)


def test_vit_global_embedding_equals_encode_image(tiny_vit):
    images = _images(64)
    with torch.no_grad():
        out = DenseCLIPViT(tiny_vit.visual)(images)
        expected = tiny_vit.encode_image(images)
    torch.testing.assert_close(out.global_embedding, expected, rtol=1e-5, atol=1e-5)


def test_vit_features_are_last_block_patch_tokens_before_ln_post(tiny_vit):
    images = _images(64)
    with torch.no_grad():
        out = DenseCLIPViT(tiny_vit.visual)(images)
        expected = tiny_vit.visual.forward_intermediates(images, indices=1, intermediates_only=True)
    torch.testing.assert_close(out.features, expected["image_intermediates"][0], rtol=1e-5, atol=1e-5)


def test_vit_dense_map_is_ln_post_and_proj_of_patch_tokens(tiny_vit):
    visual = tiny_vit.visual
    with torch.no_grad():
        out = DenseCLIPViT(visual)(_images(64))
        tokens = out.features.flatten(2).transpose(1, 2)
        expected = (visual.ln_post(tokens) @ visual.proj).transpose(1, 2).reshape(out.dense.shape)
    torch.testing.assert_close(out.dense, expected, rtol=1e-5, atol=1e-5)


def test_vit_position_table_interpolated_per_forward_matches_resized_checkpoint(tiny_vit):
    model96 = load_open_clip("tiny-vit", None, image_size=96).eval()
    load_clip_state_dict(model96, tiny_vit.state_dict(), source="tiny-vit@64")
    images = _images(96)
    with torch.no_grad():
        out = DenseCLIPViT(tiny_vit.visual)(images)
        expected = model96.encode_image(images)
    torch.testing.assert_close(out.global_embedding, expected, rtol=1e-5, atol=1e-5)


def test_drop_path_hook_zeroes_whole_samples_at_its_rate_and_keeps_the_expectation():
    torch.manual_seed(0)
    branch = nn.Identity()
    branch.register_forward_hook(DropPathHook(0.25))
    x = torch.ones(20000, 4, 3)
    out = branch.train()(x).reshape(20000, -1)
    per_sample = out[:, 0]
    assert torch.equal(out, per_sample[:, None].expand_as(out))  # a sample is dropped or kept whole
    assert per_sample.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (per_sample == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert out.mean().item() == pytest.approx(1.0, abs=0.02)
    assert branch.eval()(x) is x


def test_vit_drop_path_rises_linearly_over_blocks_and_leaves_eval_and_weights_alone(tiny_vit):
    plain = DenseCLIPViT(copy.deepcopy(tiny_vit).visual)
    dropping = DenseCLIPViT(copy.deepcopy(tiny_vit).visual, drop_path_rate=0.4)
    assert plain.drop_path_rates == [] and dropping.drop_path_rates == pytest.approx([0.0, 0.4])
    assert dropping.state_dict().keys() == plain.state_dict().keys()
    images = _images(64, batch=64)
    with torch.no_grad():
        assert torch.equal(dropping.eval()(images).features, plain.eval()(images).features)
        dropping.train()
        # The last block's branches drop per sample: some samples' MLP residual is exactly zero.
        seen = []
        last = dropping.visual.transformer.resblocks[-1]
        handle = last.ls_2.register_forward_hook(lambda m, i, o: seen.append(o.flatten(1).abs().sum(1) == 0))
        torch.manual_seed(0)
        dropping(images)
        handle.remove()
        assert 10 <= int(seen[0].sum()) <= 42  # 0.4 of 64 samples (binomial, far tails excluded)
        first = dropping.visual.transformer.resblocks[0]
        handle = first.ls_2.register_forward_hook(lambda m, i, o: seen.append(o.flatten(1).abs().sum(1) == 0))
        dropping(images)
        handle.remove()
        assert not seen[1].any()  # rate 0 in the first block


def test_drop_path_is_refused_off_the_clip_vit(tiny_rn):
    with pytest.raises(TypeError, match="drop_path_rate applies to CLIP ViT"):
        build_clip_image_encoder(tiny_rn, drop_path_rate=0.1)
    from clamp.models import create_model

    with pytest.raises(TypeError, match="drop_path_rate apply to CLIP backbones"):
        create_model("simplebaseline_tiny_rn_imagenet", drop_path_rate=0.1)
    assert create_model("clamp_tiny_vit", drop_path_rate=0.4).config["drop_path_rate"] == 0.4


def test_gradients_reach_backbone_and_projector(tiny_rn):
    encoder = DenseCLIPResNet(tiny_rn.visual).train()
    out = encoder(_images(64))
    (out.dense.sum() + out.global_embedding.sum() + out.features.mean()).backward()
    pool = tiny_rn.visual.attnpool
    assert pool.q_proj.weight.grad is not None and pool.positional_embedding.grad is not None
    assert tiny_rn.visual.conv1.weight.grad is not None
    tiny_rn.zero_grad(set_to_none=True)


@pytest.mark.parametrize("size", [48, 72])
def test_input_not_multiple_of_stride_is_rejected(tiny_rn, tiny_vit, size):
    with pytest.raises(ValueError, match="multiple of the stride"):
        DenseCLIPResNet(tiny_rn.visual)(_images(size))
    if size % 16:
        with pytest.raises(ValueError, match="multiple of the stride"):
            DenseCLIPViT(tiny_vit.visual)(_images(size))


def test_build_clip_image_encoder_rejects_unknown_towers():
    class NotClip(nn.Module):
        visual = nn.Identity()

    with pytest.raises(TypeError, match="Identity"):
        build_clip_image_encoder(NotClip())


def test_vit_with_average_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooled by avg"):  # by the loader, before anything is built
        load_open_clip("tiny-vit", None, image_size=64, vision_cfg={"pool_type": "avg"})
    cfg = copy.deepcopy(TINY_CONFIGS["tiny-vit"])
    cfg["vision_cfg"].update(pool_type="avg", image_size=64)
    with pytest.raises(ValueError, match="pool_type"):  # and by the encoder, for a tower built by hand
        DenseCLIPViT(open_clip.CLIP(**cfg).visual)


def test_imagenet_resnet50_trunk_has_stride_32_and_no_projector():
    encoder = ImageNetResNet50(None).eval()
    assert (encoder.feature_channels, encoder.embed_dim, encoder.stride) == (2048, None, 32)
    assert not hasattr(encoder, "fc")
    with torch.no_grad():
        out = encoder(_images(64, batch=1))
    assert out.features.shape == (1, 2048, 2, 2)
    assert out.dense is None and out.global_embedding is None


def test_imagenet_weights_offline_and_uncached_explain_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PretrainedWeightsError, match=r"resnet50-0676ba61\.pth") as info:
        ImageNetResNet50("imagenet")
    assert str(tmp_path / "checkpoints") in str(info.value)


def test_imagenet_tag_reads_torchvision_file_from_torch_hub_cache_offline(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = torchvision.models.resnet50(weights=None)
    reference.bn1.running_var.uniform_(0.5, 2.0)
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet50-0676ba61.pth")
    encoder = ImageNetResNet50("imagenet")
    assert torch.equal(encoder.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert torch.equal(encoder.bn1.running_var, reference.bn1.running_var)


def test_imagenet_weights_of_another_layout_are_rejected(tmp_path):
    path = tmp_path / "not_resnet.pth"
    torch.save({"state_dict": {"module.backbone.conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(PretrainedWeightsError, match="missing keys"):
        ImageNetResNet50(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "size", "feature_shape", "dense_shape"),
    [
        ("RN50", 256, (2048, 8, 8), (1024, 8, 8)),
        ("ViT-B-16", 256, (768, 16, 16), (512, 16, 16)),
        ("ViT-L-14", 224, (1024, 16, 16), (768, 16, 16)),
    ],
)
def test_full_size_clip_encoders_have_paper_shapes(arch, size, feature_shape, dense_shape):
    model = load_open_clip(arch, None, image_size=size).eval()
    encoder = build_clip_image_encoder(model)
    images = _images(size, batch=1)
    with torch.no_grad():
        out = encoder(images)
        expected_global = model.encode_image(images)
    assert out.features.shape[1:] == feature_shape
    assert out.dense.shape[1:] == dense_shape
    assert encoder.stride * feature_shape[-1] == size
    torch.testing.assert_close(out.global_embedding, expected_global, rtol=1e-4, atol=1e-4)
