"""Pose and score-map drawings: side colours, thresholds, sizes, names, captions, real photos."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from clamp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from clamp.keypoints import ANIMALPOSE, AP10K, COCO, KeypointSpec
from clamp.visualization import (
    SIDE_COLORS,
    denormalize_image,
    draw_caption,
    draw_pose,
    draw_score_maps,
    drawing_sizes,
    edge_sides,
    keypoint_sides,
)

GREY = 128


def grey_image(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), GREY, np.uint8)


def hidden_keypoints(spec: KeypointSpec) -> np.ndarray:
    """All keypoints at score 0 (not drawn); tests then place and show the ones they look at."""
    return np.zeros((spec.num_keypoints, 3), np.float64)


def index(spec: KeypointSpec, name: str) -> int:
    return spec.keypoint_names.index(name)


def pixel(image: np.ndarray, x: float, y: float) -> tuple[int, ...]:
    return tuple(int(v) for v in image[round(y), round(x)])


@pytest.mark.parametrize(
    ("spec", "left", "right", "centre"),
    [
        (AP10K, ["left_eye", "left_front_paw", "left_knee"], ["right_eye", "right_back_paw"], ["nose", "neck"]),
        (ANIMALPOSE, ["L_Eye", "L_F_Paw", "L_EarBase"], ["R_Eye", "R_B_Elbow"], ["Throat", "TailBase", "Withers"]),
        (COCO, ["left_ankle", "left_ear"], ["right_wrist"], ["nose"]),
    ],
)
def test_keypoint_sides_are_read_from_the_names(spec, left, right, centre):
    sides = keypoint_sides(spec)
    assert [sides[index(spec, n)] for n in left] == ["left"] * len(left)
    assert [sides[index(spec, n)] for n in right] == ["right"] * len(right)
    assert [sides[index(spec, n)] for n in centre] == ["centre"] * len(centre)


def test_names_decide_the_side_before_pair_order_and_pair_order_when_names_do_not_tell():
    spec = KeypointSpec(
        name="custom",
        keypoint_names=("EyeRight", "EyeLeft", "paw_a", "paw_b", "head"),
        prompt_words=("right eye", "left eye", "paw", "paw", "head"),
        flip_pairs=((0, 1), (2, 3)),
        sigmas=(0.05,) * 5,
        skeleton=((0, 1), (2, 3), (0, 4)),
        upper_body_ids=(0, 1, 4),
    )
    assert keypoint_sides(spec) == ("right", "left", "left", "right", "centre")
    assert edge_sides(spec) == ("centre", "centre", "centre")


def test_edges_take_the_side_their_ends_share():
    sides = dict(zip(AP10K.skeleton, edge_sides(AP10K)))
    assert sides[(index(AP10K, "left_shoulder"), index(AP10K, "left_elbow"))] == "left"
    assert sides[(index(AP10K, "right_hip"), index(AP10K, "right_knee"))] == "right"
    assert sides[(index(AP10K, "neck"), index(AP10K, "left_shoulder"))] == "centre"
    assert sides[(index(AP10K, "left_eye"), index(AP10K, "right_eye"))] == "centre"


def test_side_colours_differ_left_right_centre_on_a_drawn_image():
    keypoints = hidden_keypoints(AP10K)
    # Three horizontal edges, one per side, far from each other.
    placed = {
        "left_shoulder": (100, 100),
        "left_elbow": (300, 100),
        "right_shoulder": (100, 400),
        "right_elbow": (300, 400),
        "neck": (100, 700),
        "root_of_tail": (300, 700),
    }
    for name, (x, y) in placed.items():
        keypoints[index(AP10K, name)] = (x, y, 1.0)
    drawing = draw_pose(grey_image(800, 800), keypoints, AP10K)

    assert pixel(drawing, 100, 100) == SIDE_COLORS["left"]
    assert pixel(drawing, 100, 400) == SIDE_COLORS["right"]
    assert pixel(drawing, 100, 700) == SIDE_COLORS["centre"]
    assert pixel(drawing, 200, 100) == SIDE_COLORS["left"]  # edge midpoints
    assert pixel(drawing, 200, 400) == SIDE_COLORS["right"]
    assert pixel(drawing, 200, 700) == SIDE_COLORS["centre"]
    assert len(set(SIDE_COLORS.values())) == 3


def test_one_colour_replaces_the_side_colours_when_given():
    keypoints = hidden_keypoints(AP10K)
    keypoints[index(AP10K, "left_eye")] = (50, 50, 1.0)
    keypoints[index(AP10K, "right_eye")] = (150, 50, 1.0)
    drawing = draw_pose(grey_image(200, 200), keypoints, AP10K, color=(64, 200, 64))
    assert pixel(drawing, 50, 50) == pixel(drawing, 150, 50) == (64, 200, 64)


def test_points_at_or_below_the_threshold_and_their_edges_are_not_drawn():
    keypoints = hidden_keypoints(AP10K)
    shoulder, elbow, paw = (index(AP10K, n) for n in ("left_shoulder", "left_elbow", "left_front_paw"))
    keypoints[shoulder] = (100, 100, 0.9)
    keypoints[elbow] = (300, 100, 0.3)  # exactly at the threshold: hidden
    keypoints[paw] = (300, 300, 0.31)
    keypoints[index(AP10K, "right_eye")] = (np.nan, np.nan, 1.0)
    image = grey_image(400, 400)
    drawing = draw_pose(image, keypoints, AP10K, score_threshold=0.3)

    assert pixel(drawing, 100, 100) == SIDE_COLORS["left"]
    assert pixel(drawing, 300, 300) == SIDE_COLORS["left"]
    changed = np.any(drawing != image, axis=2)
    assert not changed[80:120, 280:320].any(), "the point at the threshold was drawn"
    assert not changed[100, 130:270].any(), "an edge to a hidden point was drawn"
    assert not changed[300, 130:270].any() and not changed[130:270, 300].any()


def edge_thickness(height: int, width: int) -> int:
    """Drawn thickness (pixels changed across it) of one horizontal edge in the middle of an image."""
    keypoints = hidden_keypoints(AP10K)
    y = height // 2
    keypoints[index(AP10K, "left_shoulder")] = (width * 0.1, y, 1.0)
    keypoints[index(AP10K, "left_elbow")] = (width * 0.9, y, 1.0)
    image = grey_image(height, width)
    drawing = draw_pose(image, keypoints, AP10K)
    return int(np.any(drawing[:, width // 2] != image[:, width // 2], axis=1).sum())


def test_line_width_grows_with_the_image_size():
    small, large = edge_thickness(64, 64), edge_thickness(3000, 4000)
    assert small >= 2
    assert large > 4 * small
    assert large >= 3000 / 200, "lines on a 4000-px photo would be hair-thin when viewed whole"
    assert drawing_sizes(3000, 4000).radius > drawing_sizes(64, 64).radius


def test_names_are_written_when_asked():
    keypoints = hidden_keypoints(AP10K)
    keypoints[index(AP10K, "nose")] = (100, 150, 1.0)
    plain = draw_pose(grey_image(300, 300), keypoints, AP10K)
    named = draw_pose(grey_image(300, 300), keypoints, AP10K, show_names=True)
    rows, columns = np.nonzero(np.any(named != plain, axis=2))
    assert rows.size > 50
    assert columns.min() > 100 and rows.max() < 150, "the name should sit above right of the point"


def test_caption_darkens_a_banner_across_the_top_and_keeps_the_size():
    image = grey_image(300, 400)
    drawing = draw_caption(image, "demo model: synthetic data, random CLIP weights")
    assert drawing.shape == image.shape
    assert drawing[:5].mean() < GREY / 2
    assert (drawing[:30] > 200).any(), "no light text on the banner"
    np.testing.assert_array_equal(drawing[100:], image[100:])
    np.testing.assert_array_equal(draw_pose(image, hidden_keypoints(AP10K), AP10K, caption="x")[100:], image[100:])


def test_score_map_overlay_is_neither_blank_nor_the_input_and_puts_heat_on_the_peak():
    image = grey_image(64, 96)
    maps = np.zeros((AP10K.num_keypoints, 16, 24), np.float32)
    maps[:, 10, 18] = 1.0  # map cell (18, 10) -> panel pixel (72, 40) at the 4x stride
    grid = draw_score_maps(image, maps, AP10K, columns=6, panel_size=96, gap=4)

    assert grid.shape == (3 * 64 + 2 * 4, 6 * 96 + 5 * 4, 3)
    first = grid[:64, :96].astype(int)
    assert first.std() > 20
    assert not np.array_equal(first, image)
    # HOT grows brighter with the value (JET does not), so the brightest pixel marks the peak.
    hot = draw_score_maps(image, maps, AP10K, columns=6, panel_size=96, colormap=cv2.COLORMAP_HOT)
    brightness = hot[20:64, :96].astype(int).sum(axis=2)  # below the name banner
    assert np.unravel_index(np.argmax(brightness), brightness.shape) == (40 - 20, 72)
    # The grid has 18 cells for 17 keypoints: the last stays white.
    assert (grid[-64:, -96:] == 255).all()


def test_score_maps_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(17, h, w\)"):
        draw_score_maps(grey_image(64, 64), np.zeros((20, 16, 16)), AP10K)


def test_keypoints_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(20, 3\)"):
        draw_pose(grey_image(64, 64), hidden_keypoints(AP10K), ANIMALPOSE)


def test_denormalize_image_inverts_imagenet_normalisation():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    normalised = (rgb / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    tensor = torch.from_numpy(normalised.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(denormalize_image(tensor), rgb)


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_draws_on_the_real_cat_photo(fixtures_dir):
    photo = read_rgb(fixtures_dir / "photos" / "chelsea.png")
    height, width = photo.shape[:2]
    rng = np.random.default_rng(0)
    keypoints = np.stack([rng.uniform(0, width, 17), rng.uniform(0, height, 17), rng.uniform(0, 1, 17)], axis=1)
    drawing = draw_pose(
        photo, keypoints, AP10K, show_names=True, caption="demo model: synthetic data, random CLIP weights"
    )
    assert drawing.shape == photo.shape and drawing.dtype == np.uint8
    assert (np.any(drawing != photo, axis=2)).mean() > 0.02
    maps = rng.normal(size=(17, 16, 16)).astype(np.float32)
    assert draw_score_maps(photo, maps, AP10K).shape[2] == 3


@pytest.mark.parametrize(
    ("folder", "annotations", "spec"),
    [("ap10k_mini", "test_ap10k.json", AP10K), ("animalpose_mini", "test_animalpose.json", ANIMALPOSE)],
)
def test_draws_the_fixtures_ground_truth_in_side_colours(fixtures_dir, folder, annotations, spec):
    data = json.loads((fixtures_dir / folder / annotations).read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    sides = keypoint_sides(spec)
    for annotation in data["annotations"]:
        image = read_rgb(fixtures_dir / folder / files[annotation["image_id"]])
        keypoints = np.array(annotation["keypoints"], np.float64).reshape(-1, 3)
        drawing = draw_pose(image, keypoints, spec)
        sizes = drawing_sizes(*image.shape[:2])
        labelled = np.flatnonzero(keypoints[:, 2] > 0)
        checked = 0
        for i in labelled:
            distances = np.hypot(*(keypoints[labelled, :2] - keypoints[i, :2]).T)
            if np.sort(distances)[1] > 2 * (sizes.radius + sizes.outline):  # not covered by a neighbour
                assert pixel(drawing, *keypoints[i, :2]) == SIDE_COLORS[sides[i]], spec.keypoint_names[i]
                checked += 1
        assert checked >= len(labelled) // 2
        unlabelled = np.flatnonzero(keypoints[:, 2] == 0)
        assert unlabelled.size, "the fixtures have unlabelled points at (0, 0)"
        np.testing.assert_array_equal(drawing[:2, :2], image[:2, :2])
