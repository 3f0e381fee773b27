"""The fast input-pipeline switches against the exact path: ``data.reduced_decode`` (JPEG DCT-scaled
decoding when the crop allows) and ``data.uint8_images`` (normalisation on the device)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from clamp.codec import HeatmapCodec
from clamp.data.coco import load_coco_keypoints
from clamp.data.dataset import TopDownDataset
from clamp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TopDownTransform,
    normalize_uint8_images,
    reduction_matrix,
)
from clamp.files import read_image_rgb, read_image_rgb_reduced
from clamp.synthetic.datasets import annotation_path, generate_synthetic

SIZE = 64  # the crops' input size: small crops from 512-px images give every reduction factor


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("pipeline") / "ap10k", num_train=6, num_val=1, image_size=512)


def _dataset(root: Path, *, reduced: bool = False, uint8: bool = False) -> TopDownDataset:
    data = load_coco_keypoints(annotation_path(root, "train"), "ap10k", root / "data")
    codec = HeatmapCodec((SIZE, SIZE), (SIZE // 4, SIZE // 4), 2.0, (SIZE // 32, SIZE // 32))
    transform = TopDownTransform(data.spec, input_size=(SIZE, SIZE), training=True, uint8_output=uint8)
    return TopDownDataset(data, transform, codec, seed=0, reduced_decode=reduced)


def _samples(dataset: TopDownDataset, epochs: int = 3) -> list[dict]:
    return [dataset[(epoch, i)] for epoch in range(epochs) for i in range(len(dataset))]


def test_plan_then_apply_is_the_plain_call_bit_for_bit(root: Path) -> None:
    data = load_coco_keypoints(annotation_path(root, "train"), "ap10k", root / "data")
    transform = TopDownTransform(data.spec, input_size=(SIZE, SIZE), training=True, color_jitter_prob=0.5)
    image = read_image_rgb(data.image_path(data.instances[0].image_id))
    inst = data.instances[0]
    center, scale = np.array(inst.bbox[:2]) + np.array(inst.bbox[2:]) / 2, np.array(inst.bbox[2:]) * 1.25
    for seed in range(20):
        whole = transform(image, inst.keypoints, center, scale, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        parts = transform.apply(image, transform.plan(image.shape[1], inst.keypoints, center, scale, rng), rng)
        assert torch.equal(whole.image, parts.image)
        assert np.array_equal(whole.keypoints, parts.keypoints) and whole.rotation == parts.rotation


def test_max_reduction_keeps_at_least_the_output_resolution() -> None:
    transform = TopDownTransform("ap10k", input_size=(256, 256))
    keypoints = np.zeros((17, 3), np.float32)
    expected = {100: 1, 255: 1, 256: 1, 511: 1, 512: 2, 1023: 2, 1024: 4, 2048: 8, 9000: 8}
    for box, factor in expected.items():
        plan = transform.plan(4000, keypoints, np.array([2000.0, 2000.0]), np.array([box, box], np.float32))
        assert transform.max_reduction(plan) == factor, box


def test_reduced_decoding_is_opencvs_dct_scaled_decode_and_full_size_is_the_exact_one(root: Path) -> None:
    path = root / "data" / "000000000001.jpg"
    exact = read_image_rgb(path)
    full, factor = read_image_rgb_reduced(path, max_reduction=1)
    assert factor == 1 and np.array_equal(full, exact)
    for wanted, flag in (
        (2, cv2.IMREAD_REDUCED_COLOR_2),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (8, cv2.IMREAD_REDUCED_COLOR_8),
    ):
        reduced, factor = read_image_rgb_reduced(path, max_reduction=wanted)
        assert factor == wanted and reduced.shape == (512 // wanted, 512 // wanted, 3)
        assert np.array_equal(reduced, cv2.cvtColor(cv2.imread(str(path), flag), cv2.COLOR_BGR2RGB))


def test_reduced_decoding_falls_back_to_the_whole_image_for_non_jpegs_and_truncated_files(root, tmp_path) -> None:
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), cv2.imread(str(root / "data" / "000000000001.jpg")))
    image, factor = read_image_rgb_reduced(png, max_reduction=4)
    assert factor == 1 and np.array_equal(image, read_image_rgb(png))
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes((root / "data" / "000000000001.jpg").read_bytes()[:-3000])
    from clamp.files import ImageError

    with pytest.raises(ImageError, match="truncated"):
        read_image_rgb_reduced(truncated, max_reduction=4)


def test_reduction_matrix_maps_a_reduced_pixel_to_the_centre_of_the_pixels_it_averages(tmp_path) -> None:
    # A bright 8x8 square at full pixels 96..103: its centre is 99.5 in the full image.
    image = np.zeros((256, 256, 3), np.uint8)
    image[96:104, 160:168] = 255
    path = tmp_path / "square.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    for factor in (2, 4, 8):
        reduced, got = read_image_rgb_reduced(path, max_reduction=factor)
        assert got == factor
        grey = reduced[..., 0].astype(np.float64)
        ys, xs = np.indices(grey.shape)
        centre = np.array([(xs * grey).sum(), (ys * grey).sum(), grey.sum()])
        x, y = centre[:2] / centre[2]
        mapped = reduction_matrix(factor) @ np.array([x, y, 1.0])
        assert mapped[:2] == pytest.approx([163.5, 99.5], abs=0.35), factor


def test_reduced_decode_keeps_the_augmentation_keypoints_and_targets_and_pixels_close(root: Path) -> None:
    exact, reduced = _samples(_dataset(root)), _samples(_dataset(root, reduced=True))
    factors = []
    ds = _dataset(root, reduced=True)
    for i in range(len(ds)):
        plan = ds.transform.plan(
            512, ds.data.instances[i].keypoints, ds.centers[i], ds.scales[i], np.random.default_rng(i)
        )
        factors.append(ds.transform.max_reduction(plan))
    assert max(factors) > 1, "the fixture must exercise a reduction"
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    for a, b in zip(exact, reduced):
        for key in ("keypoints", "heatmap", "target_weight", "coarse_heatmap", "center", "scale", "rotation"):
            assert torch.equal(a[key], b[key]), key
    difference = torch.stack([(a["image"] - b["image"]).abs() * std for a, b in zip(exact, reduced)])
    assert 0 < float(difference.mean()) < 4.0  # grey levels: resampled from the DCT-scaled image


def test_uint8_batches_normalised_on_the_device_equal_the_cpu_normalisation(root: Path) -> None:
    exact, uint8 = _samples(_dataset(root), 1), _samples(_dataset(root, uint8=True), 1)
    assert uint8[0]["image"].dtype == torch.uint8
    batch = torch.stack([s["image"] for s in uint8])
    assert torch.equal(normalize_uint8_images(batch), torch.stack([s["image"] for s in exact]))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert normalize_uint8_images(torch.zeros(1, 3, 2, 2, dtype=torch.uint8)).allclose(
        -mean / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    )


def _losses(run: Path) -> list[str]:
    import csv

    (metrics,) = run.glob("csv/*/metrics.csv")
    with open(metrics) as file:
        return [row["train/loss"] for row in csv.DictReader(file) if row.get("train/loss")]


def _train(synthetic_root: Path, run: Path, *switches: str) -> list[str]:
    from clamp.train import train
    from tests.helpers import compose_train, fast_overrides

    extra = ("trainer.limit_train_batches=3", "test_after_fit=false", *switches)
    train(compose_train(fast_overrides(synthetic_root, run, *extra)))
    return _losses(run)


@pytest.fixture(scope="module")
def plain_losses(synthetic_root: Path, tmp_path_factory) -> list[str]:
    losses = _train(synthetic_root, tmp_path_factory.mktemp("plain"))
    assert losses
    return losses


def test_training_on_uint8_batches_gives_the_losses_of_float_batches(synthetic_root, tmp_path, plain_losses) -> None:
    assert _train(synthetic_root, tmp_path, "data.uint8_images=true") == plain_losses


def test_training_with_a_decoded_cache_gives_the_losses_of_training_without_it(
    synthetic_root, tmp_path, plain_losses
) -> None:
    cache = tmp_path / "cache"
    assert _train(synthetic_root, tmp_path / "run", f"data.decoded_cache={cache}") == plain_losses
    assert any(cache.rglob("*.rgb"))
