"""``data.decoded_cache``: images decoded once, then memory-mapped, with the pixels of the uncached paths."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import clamp.data.dataset as dataset_module
from clamp.codec import HeatmapCodec
from clamp.data.coco import load_coco_keypoints
from clamp.data.dataset import TopDownDataset
from clamp.data.decoded_cache import DecodedImageCache
from clamp.data.transforms import TopDownTransform
from clamp.files import new_file_mode
from clamp.synthetic.datasets import annotation_path, generate_synthetic

SIZE = 64  # crops from 512-px images


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("cache") / "ap10k", num_train=6, num_val=1, image_size=512)


def _dataset(
    root: Path, cache: Path | None = None, *, reduced: bool = False, size: int = SIZE, **augmentation
) -> TopDownDataset:
    data = load_coco_keypoints(annotation_path(root, "train"), "ap10k", root / "data")
    codec = HeatmapCodec((size, size), (size // 4, size // 4), 2.0, (size // 32, size // 32))
    transform = TopDownTransform(data.spec, input_size=(size, size), training=True, **augmentation)
    decoded = DecodedImageCache(cache) if cache is not None else None
    return TopDownDataset(data, transform, codec, seed=0, reduced_decode=reduced, decoded_cache=decoded)


def _samples(dataset: TopDownDataset, epochs: tuple[int, ...] = (0, 1)) -> list[dict]:
    return [dataset[(epoch, i)] for epoch in epochs for i in range(len(dataset))]


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[key], y[key]) for x, y in zip(a, b) for key in x)


def _no_decoding(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the image is in the cache")

    monkeypatch.setattr(dataset_module, "read_image_rgb", refuse)
    monkeypatch.setattr(dataset_module, "read_image_rgb_reduced", refuse)


def test_cached_samples_equal_the_uncached_ones_bit_for_bit_and_later_epochs_decode_nothing(
    root, tmp_path, monkeypatch
) -> None:
    exact = _samples(_dataset(root))
    cached = _dataset(root, tmp_path / "cache")
    assert _same(_samples(cached, (0,)), exact[: len(cached)])  # the first epoch fills the cache
    assert len(list((tmp_path / "cache").rglob("*.rgb"))) == len(cached.data.images)
    _no_decoding(monkeypatch)
    assert _same(_samples(cached, (1,)), exact[len(cached) :])
    assert _same(_samples(_dataset(root, tmp_path / "cache"), (1,)), exact[len(cached) :])  # a new process


def test_every_crop_the_augmentation_draws_allows_the_images_cached_reduction(root) -> None:
    # Half-body crops are the smallest: with them almost always drawn the bound must still hold. 32-px
    # crops: the images' reductions are 1 and 2, the crops' up to 8.
    dataset = _dataset(root, Path("unused"), reduced=True, size=32, half_body_prob=0.9, half_body_min_keypoints=3)
    transform = dataset.transform
    reductions = set(dataset.image_reductions.values())
    drawn = []
    for i, inst in enumerate(dataset.data.instances):
        for seed in range(200):
            plan = transform.plan(
                512, inst.keypoints, dataset.centers[i], dataset.scales[i], np.random.default_rng(seed)
            )
            drawn.append(transform.max_reduction(plan))
            assert transform.max_reduction(plan) >= dataset.image_reductions[inst.image_id], (i, seed)
    assert max(reductions) > 1 and max(drawn) > max(reductions), "the fixture must exercise reductions"


def test_reduced_and_cached_samples_keep_the_geometry_and_are_at_least_as_close_to_the_exact_pixels(
    root, tmp_path
) -> None:
    exact, reduced = _samples(_dataset(root, size=32)), _samples(_dataset(root, reduced=True, size=32))
    cached_dataset = _dataset(root, tmp_path / "cache", reduced=True, size=32)
    assert set(cached_dataset.image_reductions.values()) == {1, 2}
    cached = _samples(cached_dataset)
    for a, b in zip(exact, cached):
        for key in ("keypoints", "heatmap", "target_weight", "coarse_heatmap", "center", "scale", "rotation"):
            assert torch.equal(a[key], b[key]), key

    def error(samples: list[dict]) -> float:
        return float(torch.stack([(a["image"] - b["image"]).abs() for a, b in zip(exact, samples)]).mean())

    assert 0 < error(cached) <= error(reduced)


def test_a_damaged_entry_is_decoded_again_and_rewritten(root, tmp_path) -> None:
    exact = _samples(_dataset(root), (0,))
    _samples(_dataset(root, tmp_path / "cache"), (0,))
    entries = sorted((tmp_path / "cache").rglob("*.rgb"))
    entries[0].write_bytes(entries[0].read_bytes()[:200])  # truncated
    entries[1].write_bytes(b"not an array")
    assert _same(_samples(_dataset(root, tmp_path / "cache"), (0,)), exact)
    height, width = np.frombuffer(entries[0].read_bytes()[8:16], dtype="<u4")  # the documented layout
    assert entries[0].read_bytes()[:8] == b"CLAMPRGB" and entries[0].stat().st_size == 16 + height * width * 3
    assert entries[1].stat().st_size == entries[0].stat().st_size or entries[1].read_bytes()[:8] == b"CLAMPRGB"


def test_an_image_edited_before_a_run_gets_a_new_entry(root, tmp_path) -> None:
    dataset = _dataset(root, tmp_path / "cache")
    path = dataset.data.image_path(dataset.data.instances[0].image_id)
    before = dataset.decoded_cache.entry(path, 1)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert DecodedImageCache(tmp_path / "cache").entry(path, 1) != before


def test_an_unwritable_cache_folder_decodes_as_without_it_and_says_so_once(root, tmp_path, caplog) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="clamp.data.decoded_cache"):
        samples = _samples(_dataset(root, blocked / "cache"), (0,))
    assert _same(samples, _samples(_dataset(root), (0,)))
    warnings = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1 and str(blocked / "cache") in warnings[0]


def test_cache_files_get_the_users_umask_and_no_temporary_file_is_left(root, tmp_path) -> None:
    _samples(_dataset(root, tmp_path / "cache"), (0,))
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".rgb" and not p.name.startswith(".") for p in files)
    assert {p.stat().st_mode & 0o777 for p in files} == {new_file_mode()}
