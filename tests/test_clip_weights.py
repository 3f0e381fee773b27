"""CLIP weight loading: file formats round-trip bit-exactly, positional tables resize, offline failures."""

from __future__ import annotations

import time
import warnings

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F

from clamp.models import hub
from clamp.models.clip_backbone import load_open_clip
from clamp.models.hub import network_reachable
from clamp.models.weight_files import PretrainedWeightsError


def _tiny(arch: str, size: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    model = load_open_clip(arch, None, image_size=size)
    with torch.no_grad():  # BN statistics are part of the state too
        for name, buffer in model.named_buffers():
            if "running" in name:
                buffer.uniform_(0.5, 1.5)
    return model


def _assert_same_state(loaded: torch.nn.Module, reference: torch.nn.Module) -> None:
    expected = reference.state_dict()
    actual = loaded.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def _save_plain(model, path):
    torch.save(model.state_dict(), path)


def _save_wrapped_ddp(model, path):
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)


def _save_safetensors(model, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.mark.parametrize("arch", ["tiny-rn", "tiny-vit"])
@pytest.mark.parametrize(
    ("save", "filename"),
    [(_save_plain, "w.pt"), (_save_plain, "w.bin"), (_save_wrapped_ddp, "w.pth"), (_save_safetensors, "w.safetensors")],
)
def test_state_dict_formats_round_trip_bit_exactly(tmp_path, arch, save, filename):
    reference = _tiny(arch, seed=1)
    save(reference, tmp_path / filename)
    loaded = load_open_clip(arch, str(tmp_path / filename), image_size=64)
    _assert_same_state(loaded, reference)


def test_torchscript_archive_loads_like_an_openai_release(tmp_path):
    """OpenAI's releases are fp16 TorchScript archives carrying extra settings entries."""
    reference = _tiny("tiny-rn", seed=2).eval()
    scripted = _tiny("tiny-rn", seed=2).eval().half()
    scripted.register_buffer("input_resolution", torch.tensor(64))
    with warnings.catch_warnings():  # torch.jit is deprecated, but it is what OpenAI shipped
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(scripted), str(tmp_path / "RN50.pt"))
    loaded = load_open_clip("tiny-rn", str(tmp_path / "RN50.pt"), image_size=64)
    for key, value in reference.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert loaded.state_dict()[key].dtype == value.dtype
        assert torch.equal(loaded.state_dict()[key], expected), key


def _expected_resize(table: torch.Tensor, old: int, new: int) -> torch.Tensor:
    grid = table[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bilinear", align_corners=False)
    return torch.cat([table[:1], grid.permute(0, 2, 3, 1).reshape(new * new, -1)])


@pytest.mark.parametrize(
    ("arch", "key", "old", "new"),
    [("tiny-rn", "visual.attnpool.positional_embedding", 7, 8), ("tiny-vit", "visual.positional_embedding", 14, 16)],
)
def test_224_weights_loaded_at_256_get_bilinearly_resized_positional_tables(tmp_path, arch, key, old, new):
    trained = _tiny(arch, size=224, seed=3)
    torch.save(trained.state_dict(), tmp_path / "w224.pt")
    loaded = load_open_clip(arch, str(tmp_path / "w224.pt"), image_size=256)
    table = loaded.state_dict()[key]
    assert table.shape[0] == new * new + 1
    assert torch.equal(table[0], trained.state_dict()[key][0])  # class position kept
    torch.testing.assert_close(table, _expected_resize(trained.state_dict()[key], old, new), rtol=0, atol=0)
    for name, value in trained.state_dict().items():
        if name != key:
            assert torch.equal(loaded.state_dict()[name], value), name


def test_offline_uncached_tag_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip/RN50.pt
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError) as info:
        load_open_clip("RN50", "openai", image_size=256)
    assert time.monotonic() - start < 5
    message = str(info.value)
    for needle in (
        "'openai'",
        "'RN50'",
        "isn't cached",
        "offline",
        "RN50.pt",
        "ViT-B-16.pt",
        "ViT-L-14.pt",
        "HF_HOME",
        "pretrained=null",
    ):
        assert needle in message, needle


def test_uncached_tag_without_offline_flag_fails_fast_when_hub_unreachable(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(hub, "network_reachable", lambda url: False)
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError, match="cannot be reached"):
        load_open_clip("ViT-B-16", "openai", image_size=256)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("url", ["http://host.invalid/", "http://127.0.0.1:1/", "not a url"])
def test_network_probe_reports_unreachable_hosts_quickly(url):
    start = time.monotonic()
    assert not network_reachable(url, timeout=0.5)
    assert time.monotonic() - start < 2


def test_tag_found_in_hugging_face_cache_is_used_without_network(tmp_path, monkeypatch):
    """A (corrupt) file at the tag's HF cache location is what gets read: no download is attempted."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--timm--resnet50_clip.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PretrainedWeightsError, match="cannot read weight file .*open_clip_model.safetensors"):
        load_open_clip("RN50", "openai", image_size=256)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "RN50.pt"
    with pytest.raises(PretrainedWeightsError, match=f"{missing}.*does not exist"):
        load_open_clip("tiny-rn", str(missing), image_size=64)


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(PretrainedWeightsError, match=r"'not_a_tag'.*Known tags: \[.*'openai'"):
        load_open_clip("RN50", "not_a_tag", image_size=256)


def test_tiny_configs_have_no_tags():
    with pytest.raises(PretrainedWeightsError, match="no pretrained tags"):
        load_open_clip("tiny-vit", "openai", image_size=64)


def test_weights_of_another_architecture_are_rejected(tmp_path):
    torch.save(_tiny("tiny-rn").state_dict(), tmp_path / "rn.pt")
    with pytest.raises(PretrainedWeightsError, match="missing keys"):
        load_open_clip("tiny-vit", str(tmp_path / "rn.pt"), image_size=64)


def test_file_without_tensors_is_rejected(tmp_path):
    torch.save({"epoch": 3}, tmp_path / "meta.pt")
    with pytest.raises(PretrainedWeightsError, match="not a non-empty dict of tensors"):
        load_open_clip("tiny-rn", str(tmp_path / "meta.pt"), image_size=64)


def test_unknown_arch_and_bad_image_size_raise_value_errors():
    with pytest.raises(ValueError, match="unknown CLIP arch 'RN49'"):
        load_open_clip("RN49", None, image_size=256)
    with pytest.raises(ValueError, match="multiple of the vision stride 16"):
        load_open_clip("tiny-vit", None, image_size=72)


def test_config_overrides_merge_into_tower_configs():
    model = load_open_clip("tiny-vit", None, image_size=64, vision_cfg={"layers": 1}, quick_gelu=False)
    assert len(model.visual.transformer.resblocks) == 1
    assert model.visual.conv1.out_channels == 64  # the rest of vision_cfg is kept
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, torch.nn.GELU)
