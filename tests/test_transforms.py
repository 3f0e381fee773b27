"""Crop geometry and training augmentations (clamp.data.transforms)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clamp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TopDownTransform,
    affine_transform_points,
    box_to_center_scale,
    flip_center,
    flip_keypoints,
    get_affine_transform,
    half_body_center_scale,
)
from clamp.keypoints import AP10K


def _mmpose_affine(center, scale, rot, output_size):
    """mmpose 0.x get_affine_transform (three-point construction), scale in pixels instead of /200."""

    def rotate(pt, rad):
        sn, cs = np.sin(rad), np.cos(rad)
        return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src_dir = rotate([0.0, scale[0] * -0.5], np.pi * rot / 180)
    dst_dir = np.array([0.0, output_size[0] * -0.5])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    src[2] = third(src[0], src[1])
    dst[0] = [output_size[0] * 0.5, output_size[1] * 0.5]
    dst[1] = dst[0] + dst_dir
    dst[2] = third(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def test_affine_matrix_matches_mmpose_three_point_construction():
    rng = np.random.default_rng(0)
    for _ in range(20):
        center = rng.uniform(0, 500, 2)
        scale = np.full(2, rng.uniform(50, 400))
        rot = rng.uniform(-80, 80)
        ours = get_affine_transform(center, scale, rot, (256, 256))
        ref = _mmpose_affine(center, scale, rot, (256, 256))
        pts = rng.uniform(0, 500, (5, 2))
        ref_pts = affine_transform_points(pts, ref)
        np.testing.assert_allclose(affine_transform_points(pts, ours), ref_pts, atol=1e-2)


def test_affine_maps_center_to_crop_middle_and_scale_to_width():
    m = get_affine_transform((100.0, 50.0), (200.0, 150.0), 0.0, (256, 192))
    out = affine_transform_points(np.array([[100.0, 50.0], [0.0, 50.0]]), m)
    np.testing.assert_allclose(out, [[128.0, 96.0], [0.0, 96.0]], atol=1e-9)


def test_warp_then_inverse_warp_returns_keypoints():
    rng = np.random.default_rng(1)
    for _ in range(50):
        center = rng.uniform(-100, 1000, 2)
        scale = rng.uniform(20, 800, 2)
        rot = rng.uniform(-180, 180)
        size = (int(rng.integers(64, 400)), int(rng.integers(64, 400)))
        pts = rng.uniform(-200, 1200, (17, 2)).astype(np.float32)
        fwd = get_affine_transform(center, scale, rot, size)
        back = get_affine_transform(center, scale, rot, size, inverse=True)
        round_trip = affine_transform_points(affine_transform_points(pts, fwd), back)
        assert np.abs(round_trip - pts).max() < 1e-3


def test_box_to_center_scale_pads_to_input_aspect_ratio():
    center, scale = box_to_center_scale([10, 20, 100, 50], aspect_ratio=1.0)
    np.testing.assert_allclose(center, [60, 45])
    np.testing.assert_allclose(scale, [125, 125])
    _, scale = box_to_center_scale([0, 0, 30, 90], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(scale, [67.5, 90])


def test_flipping_twice_is_identity():
    rng = np.random.default_rng(2)
    kpts = np.concatenate([rng.uniform(0, 300, (17, 2)), rng.integers(0, 3, (17, 1))], axis=1)
    kpts = kpts.astype(np.float32)
    twice = flip_keypoints(flip_keypoints(kpts, 300, AP10K.flip_index), 300, AP10K.flip_index)
    np.testing.assert_allclose(twice, kpts, atol=1e-4)
    np.testing.assert_allclose(flip_center(flip_center([12.5, 7.0], 300), 300), [12.5, 7.0])


def test_flipping_swaps_left_right_pairs_and_mirrors_x():
    kpts = np.zeros((17, 3), np.float32)
    kpts[:, 0] = np.arange(17)
    kpts[:, 2] = np.arange(17) % 3
    out = flip_keypoints(kpts, 100, AP10K.flip_index)
    names = AP10K.keypoint_names
    left_eye, right_eye, nose = names.index("left_eye"), names.index("right_eye"), names.index("nose")
    assert out[left_eye, 0] == 99 - right_eye and out[left_eye, 2] == kpts[right_eye, 2]
    assert out[right_eye, 0] == 99 - left_eye
    assert out[nose, 0] == 99 - nose
    for a, b in AP10K.flip_pairs:
        assert out[a, 0] == 99 - b and out[b, 0] == 99 - a
    assert flip_center([10.0, 5.0], 100)[0] == 89.0


def _dot_image(points_colours, size=(240, 200)):
    """Black RGB image with a small Gaussian blob per (x, y, channel)."""
    w, h = size
    img = np.zeros((h, w, 3), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y, c in points_colours:
        img[:, :, c] += 255.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
    return np.clip(img, 0, 255).astype(np.uint8)


def _brightest(image_chw, channel):
    raw = image_chw[channel].numpy() * IMAGENET_STD[channel] + IMAGENET_MEAN[channel]
    y, x = np.unravel_index(np.argmax(raw), raw.shape)
    return np.array([x, y], dtype=np.float64)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_training_warp_moves_image_content_with_keypoints(flip_prob):
    # Left eye drawn red, right eye green: after a flip channel "left eye" must sit on the green dot.
    kpts = np.zeros((17, 3), np.float32)
    kpts[0] = [100.3, 80.6, 2]
    kpts[1] = [150.8, 120.2, 2]
    image = _dot_image([(100.3, 80.6, 0), (150.8, 120.2, 1)])
    transform = TopDownTransform(
        AP10K,
        (128, 128),
        training=True,
        flip_prob=flip_prob,
        half_body_prob=0.0,
        scale_factor=0.3,
        rotation_prob=1.0,
        seed=0,
    )
    center, scale = box_to_center_scale([60, 50, 130, 110], 1.0)
    rotations = []
    for seed in range(4):
        transform.set_seed(seed)
        out = transform(image, kpts, center, scale)
        assert out.flipped == bool(flip_prob)
        rotations.append(out.rotation)
        red_channel_kpt, green_channel_kpt = (1, 0) if out.flipped else (0, 1)
        assert np.abs(_brightest(out.image, 0) - out.keypoints[red_channel_kpt, :2]).max() <= 1.0
        assert np.abs(_brightest(out.image, 1) - out.keypoints[green_channel_kpt, :2]).max() <= 1.0
        np.testing.assert_array_equal(out.keypoints[:, 2], kpts[:, 2])
    assert len(set(rotations)) == 4 and all(abs(r) > 0 for r in rotations)


def test_evaluation_transform_is_plain_normalised_crop():
    image = np.full((100, 120, 3), (124, 116, 104), np.uint8)
    kpts = np.zeros((17, 3), np.float32)
    kpts[3] = [60, 50, 2]
    out = TopDownTransform(AP10K, (64, 64), training=False)(image, kpts, np.array([60.0, 50.0]), np.array([64.0, 64.0]))
    assert out.image.shape == (3, 64, 64) and str(out.image.dtype) == "torch.float32"
    assert out.rotation == 0.0 and not out.flipped
    np.testing.assert_allclose(out.keypoints[3], [32, 32, 2])
    # ImageNet mean colour normalises to ~0 inside the image.
    assert float(out.image[:, 32, 32].abs().max()) < 0.02


def test_half_body_crops_around_upper_or_lower_joints_only():
    kpts = np.zeros((17, 3), np.float32)
    kpts[:, 2] = 2
    upper, lower = list(AP10K.upper_body_ids), list(AP10K.lower_body_ids)
    kpts[upper, :2] = np.random.default_rng(0).uniform([0, 0], [40, 20], (len(upper), 2))
    kpts[lower, :2] = np.random.default_rng(1).uniform([300, 200], [330, 260], (len(lower), 2))
    seen = set()
    for seed in range(30):
        center, scale = half_body_center_scale(kpts, AP10K.upper_body_ids, 1.0, np.random.default_rng(seed))
        chosen = kpts[upper, :2] if center[0] < 100 else kpts[lower, :2]
        seen.add("upper" if center[0] < 100 else "lower")
        np.testing.assert_allclose(center, chosen.mean(axis=0), rtol=1e-5)
        extent = chosen.max(axis=0) - chosen.min(axis=0)
        np.testing.assert_allclose(scale, [1.5 * extent.max()] * 2, rtol=1e-5)
    assert seen == {"upper", "lower"}


def test_half_body_uses_lower_joints_when_upper_has_too_few():
    kpts = np.zeros((17, 3), np.float32)
    kpts[list(AP10K.lower_body_ids), :2] = [[200 + i, 100 + 2 * i] for i in range(len(AP10K.lower_body_ids))]
    kpts[list(AP10K.lower_body_ids), 2] = 2
    kpts[0] = [5, 5, 2]
    for seed in range(5):
        center, _ = half_body_center_scale(kpts, AP10K.upper_body_ids, 1.0, np.random.default_rng(seed))
        assert center[0] > 200


def test_training_transform_uses_half_body_box_when_forced():
    kpts = np.zeros((17, 3), np.float32)
    kpts[:, :2] = np.random.default_rng(0).uniform(0, 200, (17, 2))
    kpts[:, 2] = 2
    means = [kpts[list(ids), :2].mean(axis=0) for ids in (AP10K.upper_body_ids, AP10K.lower_body_ids)]
    image = np.zeros((200, 200, 3), np.uint8)
    center, scale = box_to_center_scale([0, 0, 200, 200], 1.0)
    transform = TopDownTransform(AP10K, training=True, flip_prob=0.0, half_body_prob=1.0, rotation_prob=0.0)
    for seed in range(5):
        transform.set_seed(seed)
        out = transform(image, kpts, center, scale)
        assert min(np.abs(out.center - m).max() for m in means) < 1e-4
    kpts[9:, 2] = 0  # 9 labelled joints are needed (more than 8)
    kpts[8, 2] = 0
    out = transform(image, kpts, center, scale)
    np.testing.assert_allclose(out.center, center)


def test_seeded_transform_reproduces_and_rejects_bad_input():
    image = np.random.default_rng(0).integers(0, 255, (90, 110, 3), dtype=np.uint8)
    kpts = np.zeros((17, 3), np.float32)
    t = TopDownTransform(AP10K, (64, 64), training=True, color_jitter_prob=1.0, seed=5)
    a = t(image, kpts, np.array([55.0, 45.0]), np.array([100.0, 100.0]))
    t.set_seed(5)
    b = t(image, kpts, np.array([55.0, 45.0]), np.array([100.0, 100.0]))
    assert (a.image == b.image).all() and a.rotation == b.rotation
    with pytest.raises(ValueError, match="keypoints shape"):
        t(image, kpts[:5], np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="flip_prob"):
        TopDownTransform(AP10K, flip_prob=1.5)
