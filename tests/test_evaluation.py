"""Heatmap decoding, flip test, crop-to-image mapping, rescoring and OKS-NMS (clamp.evaluation.decode, .postprocess)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from clamp.evaluation.decode import decode_heatmaps, flip_back_heatmaps, flip_test, heatmap_to_image_coords
from clamp.evaluation.postprocess import keypoint_results, nms_by_image, oks_nms, rescore, to_coco_results
from clamp.keypoints import AP10K


def gaussian_heatmap(x: float, y: float, size: tuple[int, int] = (64, 64), sigma: float = 2.0) -> np.ndarray:
    w, h = size
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)).astype(np.float32)


def mmpose_decode(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mmpose 0.x ``_get_max_preds`` + ``post_process='default'`` (reference, loop form)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, 2).reshape(n, k, 1)
    maxvals = np.amax(flat, 2).reshape(n, k, 1)
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % w
    preds[:, :, 1] = preds[:, :, 1] // w
    preds = np.where(np.tile(maxvals, (1, 1, 2)) > 0.0, preds, -1)
    for i in range(n):
        for j in range(k):
            hm = heatmaps[i][j]
            px, py = int(preds[i][j][0]), int(preds[i][j][1])
            if 1 < px < w - 1 and 1 < py < h - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                preds[i][j] += np.sign(diff) * 0.25
    return preds, maxvals[..., 0]


def mmpose_flip_back(output_flipped: np.ndarray, flip_pairs, shift: bool) -> np.ndarray:
    """mmpose 0.x ``flip_back`` followed by the head's ``shift_heatmap`` (reference)."""
    back = output_flipped.copy()
    for left, right in flip_pairs:
        back[:, left] = output_flipped[:, right]
        back[:, right] = output_flipped[:, left]
    back = back[..., ::-1].copy()
    if shift:
        back[:, :, :, 1:] = back[:, :, :, :-1]
    return back


@pytest.mark.parametrize(("x", "y"), [(20.25, 30.75), (40.75, 10.25), (33.0, 17.0), (5.25, 58.0), (61.75, 2.25)])
def test_decode_moves_a_quarter_pixel_toward_the_larger_neighbour(x: float, y: float) -> None:
    heatmaps = gaussian_heatmap(x, y)[None, None]
    coords, maxvals = decode_heatmaps(heatmaps)
    assert coords[0, 0].tolist() == [x, y]
    dx, dy = x - round(x), y - round(y)  # the argmax is the nearest pixel; its value is the score
    assert maxvals[0, 0] == pytest.approx(np.exp(-(dx**2 + dy**2) / (2 * 2.0**2)), rel=1e-6)


def test_decode_skips_refinement_at_borders_and_marks_nonpositive_maxima() -> None:
    heatmaps = np.stack(
        [
            gaussian_heatmap(1.25, 30.0),  # argmax x = 1: mmpose refines only for 1 < x < W-1
            gaussian_heatmap(62.25, 30.0),  # argmax x = 62 = W-2: refined
            gaussian_heatmap(30.0, 63.0),  # bottom row: not refined
            -gaussian_heatmap(30.0, 30.0) - 0.1,  # negative everywhere -> (-1, -1)
            np.zeros((64, 64), np.float32),  # zero max -> (-1, -1)
        ]
    )[None]
    coords, maxvals = decode_heatmaps(heatmaps)
    assert coords[0].tolist() == [[1.0, 30.0], [62.25, 30.0], [30.0, 63.0], [-1.0, -1.0], [-1.0, -1.0]]
    assert maxvals[0, 3] < 0 and maxvals[0, 4] == 0


def test_decode_matches_mmpose_reference_for_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    heatmaps = rng.normal(size=(3, 5, 16, 12)).astype(np.float32)
    heatmaps[0, 0] -= 10  # an all-negative channel
    heatmaps[1, 1, 0, 5] = 50  # peak on the top border
    heatmaps[2, 2, 7, 11] = 50  # peak on the right border
    ref_coords, ref_max = mmpose_decode(heatmaps)
    coords, maxvals = decode_heatmaps(heatmaps)
    np.testing.assert_array_equal(coords, ref_coords)
    np.testing.assert_array_equal(maxvals, ref_max)
    t_coords, t_max = decode_heatmaps(torch.from_numpy(heatmaps))
    assert isinstance(t_coords, torch.Tensor)
    np.testing.assert_array_equal(t_coords.numpy(), ref_coords)
    np.testing.assert_array_equal(t_max.numpy(), ref_max)


def test_flip_back_matches_mmpose_flip_back_and_shift() -> None:
    rng = np.random.default_rng(1)
    heatmaps = rng.random((2, AP10K.num_keypoints, 8, 10), dtype=np.float32)
    for shift in (True, False):
        expected = mmpose_flip_back(heatmaps, AP10K.flip_pairs, shift)
        np.testing.assert_array_equal(flip_back_heatmaps(heatmaps, AP10K.flip_index, shift=shift), expected)
        torch_out = flip_back_heatmaps(torch.from_numpy(heatmaps), AP10K.flip_index, shift=shift)
        np.testing.assert_array_equal(torch_out.numpy(), expected)


def test_flip_back_puts_a_mirrored_peak_back_one_pixel_right_in_the_partner_channel() -> None:
    w = 64
    flipped = np.zeros((1, AP10K.num_keypoints, 64, w), np.float32)
    left_eye, right_eye = 0, 1
    flipped[0, left_eye, 20, 10] = 1.0  # what the model sees as the left eye in the mirrored image
    back = flip_back_heatmaps(flipped, AP10K.flip_index, shift=True)
    assert np.argwhere(back[0] == 1.0).tolist() == [[right_eye, 20, w - 1 - 10 + 1]]
    unshifted = flip_back_heatmaps(flipped, AP10K.flip_index, shift=False)
    assert np.argwhere(unshifted[0] == 1.0).tolist() == [[right_eye, 20, w - 1 - 10]]
    np.testing.assert_array_equal(flip_back_heatmaps(unshifted, AP10K.flip_index, shift=False), flipped)


def test_flip_back_rejects_a_flip_index_that_is_not_a_permutation() -> None:
    with pytest.raises(ValueError, match="permutation"):
        flip_back_heatmaps(np.zeros((1, 3, 4, 4), np.float32), [0, 0, 1])


def test_flip_test_averages_direct_and_flipped_back_heatmaps() -> None:
    rng = np.random.default_rng(2)
    # An identity "model" whose input already is a 2-channel heatmap; channel 0 and 1 are a flip pair.
    images = torch.from_numpy(rng.random((2, 2, 8, 8), dtype=np.float32))
    flip_index = [1, 0]
    expected = (images + flip_back_heatmaps(images.flip(-1), flip_index, shift=True)) * 0.5
    torch.testing.assert_close(flip_test(lambda x: x, images, flip_index), expected, rtol=0, atol=0)
    as_pose_output = flip_test(lambda x: SimpleNamespace(heatmaps=x), images, flip_index)
    torch.testing.assert_close(as_pose_output, expected, rtol=0, atol=0)
    # Without the shift, mirroring twice is the identity: only the channel swap remains.
    unshifted = flip_test(lambda x: x, images, flip_index, shift=False)
    torch.testing.assert_close(unshifted, (images + images[:, flip_index]) * 0.5, rtol=0, atol=0)


def test_heatmap_to_image_coords_inverts_the_crop_geometry() -> None:
    rng = np.random.default_rng(3)
    input_size, heatmap_size = 256, (64, 64)
    center = np.array([[400.0, 300.0], [120.5, 80.25]])
    scale = np.array([[500.0, 500.0], [90.0, 90.0]])  # crop box in image pixels, padded and square
    points = center[:, None] + (rng.random((2, 17, 2)) - 0.5) * scale[:, None] * 0.8
    input_px = (points - (center - scale / 2)[:, None]) * input_size / scale[:, None]
    heatmap_px = input_px / (input_size / heatmap_size[0])
    back = heatmap_to_image_coords(heatmap_px, center, scale, heatmap_size)
    np.testing.assert_allclose(back, points, atol=1e-9)
    back_t = heatmap_to_image_coords(torch.from_numpy(heatmap_px).float(), center, scale, heatmap_size)
    np.testing.assert_allclose(back_t.numpy(), points, atol=1e-3)


def test_heatmap_to_image_coords_uses_width_and_height_separately() -> None:
    coords = np.array([[[16.0, 8.0]]])
    out = heatmap_to_image_coords(coords, np.array([[100.0, 50.0]]), np.array([[64.0, 32.0]]), (32, 16))
    assert out[0, 0].tolist() == [100.0 - 32 + 16 * 2, 50.0 - 16 + 8 * 2]


def test_rescore_averages_keypoint_scores_above_threshold_times_bbox_score() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.2], [0.2, 0.1, 0.0, 0.05]])
    out = rescore(scores, np.array([0.8, 1.0]))
    assert out[0] == pytest.approx(0.8 * (0.9 + 0.5) / 2)  # 0.2 itself is not above the threshold
    assert out[1] == 0.0  # no keypoint above 0.2


def test_keypoint_results_builds_rescored_entries_with_crop_area() -> None:
    kpts = np.zeros((2, 3, 3))
    kpts[..., 2] = [[1.0, 0.5, 0.1], [0.1, 0.1, 0.1]]
    entries = keypoint_results(kpts, [7, 7], [1, 26], np.array([100.0, 200.0]), [1.0, 0.5], [70, 71])
    assert [(e["image_id"], e["category_id"], e["instance_id"], e["area"]) for e in entries] == [
        (7, 1, 70, 100.0),
        (7, 26, 71, 200.0),
    ]
    assert entries[0]["score"] == pytest.approx(0.75) and entries[1]["score"] == 0.0
    coco = to_coco_results(entries)
    assert set(coco[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert len(coco[0]["keypoints"]) == 9


def _pose(offset: float, score: float, image_id: int = 1, category_id: int = 1) -> dict:
    base = np.stack([np.linspace(100, 300, 17), np.linspace(50, 250, 17), np.ones(17)], axis=1)
    base[:, :2] += offset
    return {
        "image_id": image_id,
        "category_id": category_id,
        "instance_id": int(offset * 10) + image_id,
        "keypoints": base,
        "area": 250.0**2,
        "score": score,
    }


def test_oks_nms_drops_a_duplicate_and_keeps_distinct_animals() -> None:
    best, duplicate, other_animal = _pose(0.0, 0.9), _pose(0.5, 0.8, category_id=2), _pose(150.0, 0.7)
    kept = oks_nms([duplicate, other_animal, best], AP10K.sigmas, threshold=0.9)
    # The near-identical pose is dropped even with another category: official NMS ignores category.
    assert kept == [other_animal, best]
    assert oks_nms([duplicate, best], AP10K.sigmas, threshold=1.0) == [duplicate, best]
    assert oks_nms([], AP10K.sigmas) == []


def test_nms_by_image_never_suppresses_across_images() -> None:
    a, b = _pose(0.0, 0.9, image_id=1), _pose(0.0, 0.8, image_id=2)
    assert nms_by_image([b, a, _pose(0.5, 0.5, image_id=1)], AP10K.sigmas) == [a, b]
