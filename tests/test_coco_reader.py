"""The validating COCO-keypoint reader on the real mmpose fixtures and on malformed copies of them."""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO

from clamp.data.coco import AnnotationError, CocoKeypoints, load_coco_keypoints

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def ap10k_raw(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "ap10k_mini" / "test_ap10k.json").read_text())


def write_modified(tmp_path: Path, raw: dict[str, Any], edit: Edit) -> Path:
    """Write a copy of ``raw`` changed by ``edit``; annotation 6 (antelope, image 4) is the usual target."""
    data = copy.deepcopy(raw)
    edit(data)
    path = tmp_path / "modified.json"
    path.write_text(json.dumps(data))
    return path


def ann(data: dict[str, Any], ann_id: int = 6) -> dict[str, Any]:
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def load_modified(tmp_path: Path, raw: dict[str, Any], edit: Edit) -> CocoKeypoints:
    return load_coco_keypoints(write_modified(tmp_path, raw, edit), "ap10k")


def test_ap10k_fixture_loads_with_its_two_species(fixtures_dir):
    data = load_coco_keypoints(fixtures_dir / "ap10k_mini" / "test_ap10k.json", "ap10k")
    assert len(data.images) == 2 and len(data.instances) == 2 and len(data.categories) == 54
    assert sorted(data.images) == [4, 37516]
    by_id = {inst.id: inst for inst in data.instances}
    assert sorted(by_id) == [6, 9284]
    assert (by_id[6].image_id, by_id[6].category_id) == (4, 1)
    assert (by_id[9284].image_id, by_id[9284].category_id) == (37516, 26)
    assert (data.species_name(1), data.family(1)) == ("antelope", "Bovidae")
    assert (data.species_name(26), data.family(26)) == ("jaguar", "Felidae")
    assert by_id[6].num_keypoints == 16 and by_id[6].area == 146289
    assert by_id[6].keypoints.shape == (17, 3) and by_id[6].keypoints.dtype == np.float32
    assert by_id[6].keypoints[1].tolist() == [0, 0, 0]  # right eye unlabelled
    assert data.image_path(4) == fixtures_dir / "ap10k_mini" / "000000000004.jpg"
    assert data.image_path(4).is_file()
    assert data.load_stats == {"iscrowd_skipped": 0, "no_keypoints_skipped": 0, "bbox_clipped": 0}


def test_animalpose_fixture_loads_with_one_category(fixtures_dir):
    data = load_coco_keypoints(fixtures_dir / "animalpose_mini" / "test_animalpose.json", "animalpose")
    assert len(data.images) == 2 and len(data.instances) == 2 and len(data.categories) == 1
    assert sorted(inst.id for inst in data.instances) == [129, 583]
    assert all(inst.keypoints.shape == (20, 3) for inst in data.instances)
    assert {inst.id: inst.num_keypoints for inst in data.instances} == {129: 17, 583: 15}
    assert data.image_path(110).is_file()


def test_bbox_is_cleaned_like_mmpose(fixtures_dir):
    data = load_coco_keypoints(fixtures_dir / "ap10k_mini" / "test_ap10k.json", "ap10k")
    # File box [408, 197, 429, 341] covers pixel coordinates 408..836 and 197..537.
    assert next(i for i in data.instances if i.id == 6).bbox == (408.0, 197.0, 428.0, 340.0)


def test_box_past_the_border_is_clipped_and_counted(tmp_path, ap10k_raw, caplog):
    def edit(d):
        ann(d)["bbox"] = [-10, 600, 500, 200]  # image 4 is 1024x683

    with caplog.at_level(logging.INFO, logger="clamp.data.coco"):
        data = load_modified(tmp_path, ap10k_raw, edit)
    # mmpose moves a box that starts left of the image to x=0 keeping its width, then cuts it at the
    # bottom border: x2 = min(W-1, 0 + 500-1), y2 = min(H-1, 600 + 200-1).
    assert next(i for i in data.instances if i.id == 6).bbox == (0.0, 600.0, 499.0, 82.0)
    assert data.load_stats["bbox_clipped"] == 1
    assert "clipped 1 bounding box" in caplog.text


def test_documented_skips_are_counted_and_logged(tmp_path, ap10k_raw, caplog):
    def edit(d):
        ann(d, 6)["iscrowd"] = 1
        ann(d, 9284)["keypoints"] = [0] * 51
        ann(d, 9284)["num_keypoints"] = 0

    with caplog.at_level(logging.INFO, logger="clamp.data.coco"):
        data = load_modified(tmp_path, ap10k_raw, edit)
    assert data.instances == []
    assert data.load_stats == {"iscrowd_skipped": 1, "no_keypoints_skipped": 1, "bbox_clipped": 0}
    assert "skipped 1 iscrowd=1" in caplog.text
    assert "skipped 1 instance(s) with no labelled keypoint" in caplog.text


def test_skipped_instances_boxes_are_not_checked(tmp_path, ap10k_raw):
    def edit(d):
        ann(d)["iscrowd"] = 1
        ann(d)["bbox"] = [0, 0, 0, 0]

    assert [i.id for i in load_modified(tmp_path, ap10k_raw, edit).instances] == [9284]


def test_missing_num_keypoints_is_computed(tmp_path, ap10k_raw):
    data = load_modified(tmp_path, ap10k_raw, lambda d: ann(d).pop("num_keypoints"))
    assert next(i for i in data.instances if i.id == 6).num_keypoints == 16


def set_field(section: str, record_id: int, field_name: str, value: Any) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        next(r for r in d[section] if r["id"] == record_id)[field_name] = value

    return edit


def drop_field(section: str, record_id: int, field_name: str) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        del next(r for r in d[section] if r["id"] == record_id)[field_name]

    return edit


def duplicate(section: str, record_id: int) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        record = copy.deepcopy(next(r for r in d[section] if r["id"] == record_id))
        if section == "annotations":
            record["image_id"] = 37516  # only the id clashes
        d[section].append(record)

    return edit


def with_keypoint(index: int, value: Any) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        ann(d)["keypoints"][index] = value

    return edit


MALFORMED = {
    # name: (edit, words the message must contain)
    "missing_images_key": (lambda d: d.pop("images"), ["'images'", "missing"]),
    "annotations_not_a_list": (lambda d: d.update(annotations={}), ["'annotations'", "not a list"]),
    "image_without_file_name": (drop_field("images", 4, "file_name"), ["id=4", "'file_name'", "missing"]),
    "image_without_height": (drop_field("images", 37516, "height"), ["id=37516", "'height'"]),
    "image_width_not_numeric": (set_field("images", 4, "width", "1024"), ["id=4", "'width'", "'1024'"]),
    "image_width_zero": (set_field("images", 4, "width", 0), ["id=4", "'width'", "not positive"]),
    "annotation_without_bbox": (drop_field("annotations", 6, "bbox"), ["id=6", "'bbox'", "missing"]),
    "annotation_without_keypoints": (drop_field("annotations", 6, "keypoints"), ["id=6", "'keypoints'"]),
    "annotation_without_category": (drop_field("annotations", 9284, "category_id"), ["id=9284", "'category_id'"]),
    "category_without_name": (drop_field("categories", 5, "name"), ["id=5", "'name'"]),
    "image_id_not_an_integer": (set_field("annotations", 6, "image_id", 4.5), ["id=6", "'image_id'", "4.5"]),
    "keypoints_too_short": (
        set_field("annotations", 6, "keypoints", [1, 2, 2] * 16),
        ["id=6", "'keypoints'", "length 48", "51"],
    ),
    "visibility_3": (with_keypoint(5, 3), ["id=6", "'keypoints'", "3", "right_eye", "0, 1 or 2"]),
    "keypoint_nan": (with_keypoint(0, float("nan")), ["id=6", "'keypoints'", "nan", "finite"]),
    "keypoint_string": (with_keypoint(0, "488"), ["id=6", "'keypoints'", "'488'", "not a number"]),
    "box_zero_width": (set_field("annotations", 6, "bbox", [408, 197, 0, 341]), ["id=6", "'bbox'", "width"]),
    "box_outside_image": (
        set_field("annotations", 6, "bbox", [2000, 197, 50, 50]),
        ["id=6", "'bbox'", "does not overlap image 4"],
    ),
    "box_above_image": (set_field("annotations", 6, "bbox", [408, -100, 50, 60]), ["id=6", "'bbox'", "overlap"]),
    "box_one_pixel_inside": (
        set_field("annotations", 6, "bbox", [1023, 197, 5, 50]),
        ["id=6", "'bbox'", "less than 2 pixels"],
    ),
    "area_negative": (set_field("annotations", 6, "area", -5), ["id=6", "'area'", "not positive"]),
    "unknown_image": (set_field("annotations", 6, "image_id", 999), ["id=6", "'image_id'", "999", "no image"]),
    "unknown_category": (set_field("annotations", 6, "category_id", 77), ["id=6", "'category_id'", "77"]),
    "duplicate_image_id": (duplicate("images", 4), ["images", "id=4", "more than one"]),
    "duplicate_annotation_id": (duplicate("annotations", 6), ["annotations", "id=6", "more than one"]),
    "duplicate_category_id": (duplicate("categories", 26), ["categories", "id=26", "more than one"]),
    "num_keypoints_inconsistent": (
        set_field("annotations", 9284, "num_keypoints", 17),
        ["id=9284", "'num_keypoints'", "17", "16 points"],
    ),
    "category_keypoint_names_wrong_count": (
        set_field("categories", 1, "keypoints", ["a"] * 20),
        ["id=1", "'keypoints'", "20 names", "does not match", "animalpose"],
    ),
    "iscrowd_not_a_flag": (set_field("annotations", 6, "iscrowd", 2), ["id=6", "'iscrowd'"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_raises_an_error_naming_record_and_field(tmp_path, ap10k_raw, case):
    edit, words = MALFORMED[case]
    with pytest.raises(AnnotationError) as info:
        load_modified(tmp_path, ap10k_raw, edit)
    message = str(info.value)
    assert "modified.json" in message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_animalpose_file_with_ap10k_spec_says_the_spec_does_not_match(fixtures_dir):
    with pytest.raises(AnnotationError, match="does not match the keypoint spec.*animalpose"):
        load_coco_keypoints(fixtures_dir / "animalpose_mini" / "test_animalpose.json", "ap10k")


def test_missing_file_names_the_path_and_the_layout(tmp_path):
    path = tmp_path / "annotations" / "ap10k-train-split1.json"
    with pytest.raises(FileNotFoundError, match="ap10k-train-split1.json.*AP-10K.*annotations"):
        load_coco_keypoints(path, "ap10k")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(AnnotationError, match="broken.json: not valid JSON"):
        load_coco_keypoints(path, "ap10k")


def test_default_image_root_follows_the_ap10k_layout(tmp_path, ap10k_raw):
    path = tmp_path / "annotations" / "ap10k-val-split1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(ap10k_raw))
    data = load_coco_keypoints(path, "ap10k")
    assert data.image_path(4) == tmp_path / "data" / "000000000004.jpg"
    assert load_coco_keypoints(path, "ap10k", image_root=tmp_path / "imgs").image_root == tmp_path / "imgs"


def test_keypoint_arrays_are_read_only(fixtures_dir):
    data = load_coco_keypoints(fixtures_dir / "ap10k_mini" / "test_ap10k.json", "ap10k")
    with pytest.raises(ValueError):
        data.instances[0].keypoints[0, 0] = 1.0


@pytest.mark.parametrize(
    "folder, name, spec",
    [("ap10k_mini", "test_ap10k.json", "ap10k"), ("animalpose_mini", "test_animalpose.json", "animalpose")],
)
def test_ground_truth_loads_in_pycocotools(fixtures_dir, folder, name, spec):
    data = load_coco_keypoints(fixtures_dir / folder / name, spec)
    coco = COCO()
    coco.dataset = data.ground_truth()
    coco.createIndex()
    assert sorted(coco.getImgIds()) == sorted(data.images)
    assert sorted(coco.getAnnIds()) == sorted(inst.id for inst in data.instances)
    for ann_id in coco.getAnnIds():
        record = coco.anns[ann_id]
        assert {"area", "iscrowd", "bbox", "num_keypoints", "keypoints"} <= set(record)
        assert len(record["keypoints"]) == 3 * data.spec.num_keypoints
    assert all(len(c["keypoints"]) == data.spec.num_keypoints for c in coco.dataset["categories"])


def test_subset_and_its_gt_keep_only_the_chosen_instances(fixtures_dir):
    data = load_coco_keypoints(fixtures_dir / "ap10k_mini" / "test_ap10k.json", "ap10k")
    sub = data.subset([9284])
    assert [i.id for i in sub.instances] == [9284] and sorted(sub.images) == [37516]
    gt = data.ground_truth(sub.images)
    assert [a["id"] for a in gt["annotations"]] == [9284] and [i["id"] for i in gt["images"]] == [37516]
    assert gt["annotations"][0]["bbox"] == [66.0, 192.0, 1092.0, 512.0]  # the file's box, for OKS
    with pytest.raises(KeyError, match="not usable instances"):
        data.subset([12345])


def test_ground_truth_keeps_crowd_and_keypointless_annotations_of_the_evaluated_images(tmp_path, ap10k_raw):
    raw = copy.deepcopy(ap10k_raw)
    jaguar = next(a for a in raw["annotations"] if a["id"] == 9284)
    raw["annotations"] += [
        {**jaguar, "id": 1, "keypoints": [0] * 51, "num_keypoints": 0},  # no keypoints: ignored GT
        {**jaguar, "id": 2, "iscrowd": 1},  # crowd: ignored GT
        {**jaguar, "id": 3, "category_id": 24, "keypoints": [0] * 51, "num_keypoints": 0},  # cat, Felidae
    ]
    for ann in raw["annotations"][-3:]:
        ann.pop("area")  # filled in from the box, as pycocotools needs it
    path = tmp_path / "with_ignored.json"
    path.write_text(json.dumps(raw))
    data = load_coco_keypoints(path, "ap10k")
    assert sorted(inst.id for inst in data.instances) == [6, 9284]  # training skips them
    gt = data.ground_truth([37516])
    assert sorted(a["id"] for a in gt["annotations"]) == [1, 2, 3, 9284]
    assert all(a["area"] == 1092 * 512 for a in gt["annotations"] if a["id"] in (1, 2, 3))
    jaguar_only = data.ground_truth([37516], category_ids=[26])
    assert sorted(a["id"] for a in jaguar_only["annotations"]) == [1, 2, 9284]
    assert [c["id"] for c in jaguar_only["categories"]] == [26]


def test_the_data_configs_name_the_files_of_the_dataset_layouts():
    from clamp.data.layouts import LAYOUTS
    from tests.helpers import compose_train

    protocol_split = {
        "ap10k": {"train": "train", "val": "val", "test": "val"},
        "animalpose": {"train": "train", "val": "val", "test": "val"},
        "coco": {"train": "train", "val": "val", "test": "val"},
    }
    for name, layout in LAYOUTS.items():
        data = compose_train([f"data={name}", "paths.output_dir=x"]).data
        for stage, files in data.splits.items():
            split = protocol_split[name][stage]
            assert files.ann == layout.annotation.format(split=split), (name, stage)
            image_folder = os.path.normpath(os.path.join(data.root, files.images))
            assert image_folder == os.path.normpath(layout.image_folder(data.root, split)), (name, stage)
