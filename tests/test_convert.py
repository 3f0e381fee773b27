"""``python -m clamp.data.convert``: DeepLabCut / SLEAP / COCO projects to what ``data=custom`` trains on."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from clamp.data.convert import ConvertError, convert
from clamp.keypoints import AP10K, KEYPOINT_SPECS, KeypointSpecError, get_keypoint_spec, infer_flip_pairs, prompt_word
from tests.helpers import REPO_ROOT, compose_train, fast_overrides, run_cli

# The projects are built by scripts/dlc_example.py, the README's example project.
_spec = importlib.util.spec_from_file_location("dlc_example", REPO_ROOT / "scripts" / "dlc_example.py")
dlc_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dlc_example)
NAMES, SKELETON = dlc_example.NAMES, dlc_example.SKELETON
synthetic_animals, write_dlc_project = dlc_example.synthetic_animals, dlc_example.write_dlc_project


def read_back(out: Path) -> dict[str, np.ndarray]:
    """Every converted animal's (K, 2) points (NaN: unlabelled) by ``file_name#n``, from both splits."""
    found = {}
    for split in ("train", "val"):
        data = json.loads((out / "annotations" / f"{split}.json").read_text())
        names = {image["id"]: image["file_name"] for image in data["images"]}
        seen: dict[int, int] = {}
        for ann in data["annotations"]:
            n = seen.setdefault(ann["image_id"], 0)
            seen[ann["image_id"]] = n + 1
            triples = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
            found[f"{names[ann['image_id']]}#{n}"] = np.where(triples[:, 2:] > 0, triples[:, :2], np.nan)
    return found


def train_two_steps(out: Path, run: Path) -> Path:
    """Train the tiny CLAMP for two steps on a converted folder with ``data=custom data.root=OUT``; its checkpoint."""
    from clamp.train import train

    train(
        compose_train(
            fast_overrides(out, run, "data=custom", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
        )
    )
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("index_columns", [3, 1])
def test_a_deeplabcut_project_round_trips_and_data_custom_trains_on_it(synthetic_root, tmp_path, index_columns):
    expected = write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 8), index_columns=index_columns)
    result = run_cli("-m", "clamp.data.convert", "--from", "dlc", tmp_path / "dlc", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "7 training image(s)" in result.stdout and "1 validation image(s)" in result.stdout
    assert f"train: python -m clamp.train data=custom data.root={tmp_path / 'out'}" in result.stdout
    found = read_back(tmp_path / "out")
    assert sorted(found) == sorted(expected)
    for key, points in expected.items():
        np.testing.assert_allclose(found[key], points, atol=0.006, err_msg=key)  # written to 2 decimals
    spec = get_keypoint_spec(str(tmp_path / "out" / "keypoints.yaml"))
    # Flip pairs inferred from the names alone are AP-10K's own; the skeleton is the config's.
    assert spec.flip_pairs == AP10K.flip_pairs and set(spec.skeleton) == set(AP10K.skeleton)
    assert spec.prompt_words[5] == "left shoulder"
    if index_columns == 1:
        return  # one training run is enough for the two header forms
    ckpt = train_two_steps(tmp_path / "out", tmp_path / "run")
    from clamp.predictor import Predictor

    animals = Predictor.from_checkpoint(ckpt, device="cpu").predict(tmp_path / "out" / "images" / "walk" / "img000.png")
    assert animals[0].keypoints.shape == (17, 3) and set(animals[0].named()) == set(NAMES)


def test_a_multi_animal_project_gives_one_instance_per_individual_and_leaves_unique_parts_out(synthetic_root, tmp_path):
    expected = write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 4), individuals=2)
    result = convert("dlc", tmp_path / "dlc", tmp_path / "out")
    found = read_back(tmp_path / "out")
    assert sorted(found) == sorted(expected)
    for key, points in expected.items():
        np.testing.assert_allclose(found[key], points, atol=0.006, err_msg=key)
    assert result.counts["train_instances"] + result.counts["val_instances"] == 8
    assert any("uniquebodyparts" in note and note.startswith("4 ") for note in result.notes)


def test_the_deeplabcut_reader_agrees_with_sleap_ios(synthetic_root, tmp_path):
    sio = pytest.importorskip("sleap_io")
    write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 4))
    convert("dlc", tmp_path / "dlc", tmp_path / "out", val_fraction=0.5)
    found = read_back(tmp_path / "out")
    for video in ("walk", "run"):
        labels = sio.load_dlc(str(tmp_path / "dlc" / "labeled-data" / video / "CollectedData_ann.csv"))
        order = [list(labels.skeletons[0].node_names).index(name) for name in NAMES]  # it sorts the names
        assert len(labels.labeled_frames) == 2
        for lf in labels.labeled_frames:
            name = Path(lf.video.filename[lf.frame_idx] if isinstance(lf.video.filename, list) else lf.video.filename)
            ours = found[f"images/{video}/{name.name}#0"]
            np.testing.assert_allclose(ours, lf.instances[0].numpy()[order, :2], atol=0.006)


def write_slp(path: Path, animals: list[tuple[Path, np.ndarray]]) -> None:
    """A SLEAP labels file made by sleap-io: an image-sequence video, AP-10K nodes and edges, one user
    instance per frame and one predicted instance (which the converter must leave out)."""
    sio = pytest.importorskip("sleap_io")
    skeleton = sio.Skeleton(nodes=list(NAMES), edges=[list(e) for e in SKELETON])  # it converts lists in place
    video = sio.Video.from_filename([str(image) for image, _ in animals])
    frames = []
    for i, (_, points) in enumerate(animals):
        instances = [sio.Instance.from_numpy(points, skeleton=skeleton)]
        if i == 0:
            instances.append(sio.PredictedInstance.from_numpy(points + 1, skeleton=skeleton, point_scores=np.ones(17)))
        frames.append(sio.LabeledFrame(video=video, frame_idx=i, instances=instances))
    sio.save_slp(sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton]), str(path))


def test_a_sleap_file_made_with_sleap_io_round_trips_and_trains(synthetic_root, tmp_path):
    animals = synthetic_animals(synthetic_root, 6)
    write_slp(tmp_path / "flies.slp", animals)
    result = convert("sleap", tmp_path / "flies.slp", tmp_path / "out")
    found = read_back(tmp_path / "out")
    assert len(found) == 6
    for i, (image, points) in enumerate(animals):
        np.testing.assert_allclose(found[f"images/data/{i:06d}.png#0"], points, atol=0.006)
        # The frame is the source image, decoded and written as PNG.
        from clamp.files import read_image_rgb

        assert np.array_equal(
            read_image_rgb(tmp_path / "out" / "images" / "data" / f"{i:06d}.png"), read_image_rgb(image)
        )
    assert any("1 predicted instance" in note for note in result.notes)
    assert result.spec.flip_pairs == AP10K.flip_pairs
    ckpt = train_two_steps(tmp_path / "out", tmp_path / "run")
    from clamp.predictor import Predictor

    assert Predictor.from_checkpoint(ckpt, device="cpu").predict(animals[0][0])[0].keypoints.shape == (17, 3)


def test_a_coco_file_keeps_its_boxes_and_categories_and_pads_a_missing_box(synthetic_root, tmp_path):
    source = json.loads((synthetic_root / "annotations" / "ap10k-train-split1.json").read_text())
    ids = {image["id"] for image in source["images"][:5]}
    source["images"] = [image for image in source["images"] if image["id"] in ids]
    source["annotations"] = [a for a in source["annotations"] if a["image_id"] in ids]
    del source["annotations"][0]["bbox"]
    (tmp_path / "coco.json").write_text(json.dumps(source))
    result = convert("coco", tmp_path / "coco.json", tmp_path / "out", images=synthetic_root / "data")
    assert result.spec.flip_pairs == AP10K.flip_pairs and result.spec.skeleton == AP10K.skeleton
    converted = {}
    for split in ("train", "val"):
        data = json.loads((tmp_path / "out" / "annotations" / f"{split}.json").read_text())
        assert {c["name"] for c in data["categories"]} == {c["name"] for c in source["categories"]}
        converted |= {(a["category_id"], tuple(a["keypoints"])): a["bbox"] for a in data["annotations"]}
    for i, ann in enumerate(source["annotations"]):
        box = converted[(ann["category_id"], tuple(float(v) for v in ann["keypoints"]))]
        if i:
            assert box == ann["bbox"]
        else:  # the labelled points' extent, padded by 10 % of its longer side (at least 8 px), clipped
            pts = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
            pts = pts[pts[:, 2] > 0, :2]
            pad = max(0.1 * (pts.max(0) - pts.min(0)).max(), 8.0)
            assert box[:2] == pytest.approx(np.maximum(pts.min(0) - pad, 0), abs=0.01)


def test_flip_pairs_from_names_find_the_registered_datasets_pairs():
    for spec in KEYPOINT_SPECS.values():
        assert infer_flip_pairs(spec.keypoint_names) == (spec.flip_pairs, ()), spec.name


def test_flip_pairs_from_names_agree_with_sleap_io_and_a_lonely_side_is_reported():
    sio = pytest.importorskip("sleap_io")
    names = ["nose", "L_ear", "R_ear", "leftPaw", "rightPaw", "hip_l", "hip_r", "tail_left", "L1A", "R1A", "lhip"]
    pairs, unpaired = infer_flip_pairs(names)
    assert unpaired == ("tail_left",)
    ours = {tuple(sorted(p)) for p in pairs}
    theirs = {tuple(sorted(p)) for p in sio.infer_symmetry_pairs_by_name(names)}
    assert ours >= theirs and ours == {(1, 2), (3, 4), (5, 6), (8, 9)}
    assert [prompt_word(n) for n in ("L_EarBase", "tailEnd", "paw_r")] == ["left ear base", "tail end", "right paw"]


def test_a_name_with_a_side_but_no_partner_is_a_warning_of_the_converter(synthetic_root, tmp_path):
    write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 2))
    config = yaml.safe_load((tmp_path / "dlc" / "config.yaml").read_text())
    config["bodyparts"] = [*NAMES, "left_antenna"]
    (tmp_path / "dlc" / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("-m", "clamp.data.convert", "--from", "dlc", tmp_path / "dlc", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "warning: 'left_antenna' names a side but no keypoint of the other side matches it" in result.stdout


def _break_csv(root: Path, row: int, column: int, value: str) -> None:
    path = root / "labeled-data" / "walk" / "CollectedData_ann.csv"
    rows = list(csv.reader(path.open()))
    rows[row][column] = value
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda r: _break_csv(r, 3, 5, "abc"),
            "CollectedData_ann.csv: row 4, column 6 (right_eye x): 'abc' is not a number",
        ),
        (
            lambda r: _break_csv(r, 3, 2, "gone.png"),
            "CollectedData_ann.csv: row 4: image 'labeled-data/walk/gone.png' not found",
        ),
        (
            lambda r: _break_csv(r, 1, 3, "tail"),
            "CollectedData_ann.csv: column 4: body part 'tail' is not in the config",
        ),
        (lambda r: _break_csv(r, 2, 0, "coordinates"), "CollectedData_ann.csv: header row 'coords' missing"),
        (lambda r: (r / "config.yaml").write_text("Task: zoo\n"), "config.yaml: field 'bodyparts' must be a list"),
        (
            lambda r: (r / "config.yaml").write_text(
                yaml.safe_dump({"bodyparts": NAMES, "skeleton": [["nose", "tail"]]})
            ),
            "config.yaml: field 'skeleton'[0] = ['nose', 'tail'] must be two names of 'bodyparts'",
        ),
    ],
)
def test_bad_input_gets_one_line_naming_the_file_and_field(synthetic_root, tmp_path, damage, message):
    write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 2))
    damage(tmp_path / "dlc")
    result = run_cli("-m", "clamp.data.convert", "--from", "dlc", tmp_path / "dlc", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_sleap_and_coco_sources_are_named_with_the_file_and_field(synthetic_root, tmp_path):
    pytest.importorskip("sleap_io")
    (tmp_path / "notes.slp").write_text("not a labels file")
    with pytest.raises(ConvertError, match=r"notes.slp: not a SLEAP labels file sleap-io reads"):
        convert("sleap", tmp_path / "notes.slp", tmp_path / "out")
    source = json.loads((synthetic_root / "annotations" / "ap10k-train-split1.json").read_text())
    source["annotations"][3]["keypoints"] = source["annotations"][3]["keypoints"][:-3]
    (tmp_path / "coco.json").write_text(json.dumps(source))
    with pytest.raises(ConvertError, match=r"coco.json: annotations\[3\]: field 'keypoints' must be 51 numbers"):
        convert("coco", tmp_path / "coco.json", tmp_path / "out", images=synthetic_root / "data")


def test_a_prompt_word_too_long_for_the_prompt_is_a_warning_naming_the_word(synthetic_root, tmp_path):
    write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 2))
    config = yaml.safe_load((tmp_path / "dlc" / "config.yaml").read_text())
    config["bodyparts"] = [*NAMES, "tip_of_the_tail_end"]
    (tmp_path / "dlc" / "config.yaml").write_text(yaml.safe_dump(config))
    result = convert("dlc", tmp_path / "dlc", tmp_path / "out")
    assert any("'tip of the tail end' is 5 BPE tokens long" in w and "keypoints.yaml" in w for w in result.warnings)


def test_the_converter_never_writes_into_a_folder_that_has_files(synthetic_root, tmp_path):
    write_dlc_project(tmp_path / "dlc", synthetic_animals(synthetic_root, 2))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ConvertError, match="not an empty folder"):
        convert("dlc", tmp_path / "dlc", tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_a_spec_file_names_keypoints_and_a_misspelt_one_is_named_with_the_file_and_field(tmp_path):
    path = tmp_path / "keypoints.yaml"
    path.write_text(
        "keypoint_names: [nose, left_ear, right_ear]\nsigmas: [0.05, 0.05, 0.05]\n"
        "flip_pairs: [[left_ear, right_ear]]\nskeleton: [[nose, 1], [nose, right_ear]]\nupper_body_ids: [nose]\n"
    )
    spec = get_keypoint_spec(str(path))
    assert spec.flip_pairs == ((1, 2),) and spec.skeleton == ((0, 1), (0, 2)) and spec.upper_body_ids == (0,)
    assert spec.prompt_words == ("nose", "left ear", "right ear") and spec.name == "keypoints"
    path.write_text(path.read_text().replace("[[left_ear, right_ear]]", "[[left_ear, rigth_ear]]"))
    with pytest.raises(
        KeypointSpecError, match=r"keypoints.yaml: flip_pairs\[0\]: 'rigth_ear' .*did you mean right_ear"
    ):
        get_keypoint_spec(str(path))
