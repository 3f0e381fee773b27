"""Synthetic AP-10K generator: file layout, determinism, caching and keypoint semantics."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from clamp.data.coco import load_coco_keypoints
from clamp.keypoints import AP10K, AP10K_CATEGORIES
from clamp.synthetic.datasets import MANIFEST_NAME, SPLITS, annotation_path, ensure_synthetic, generate_synthetic, main
from clamp.synthetic.render import SYNTHETIC_SPECIES, SyntheticImage, render_synthetic_image

KP = {name: i for i, name in enumerate(AP10K.keypoint_names)}
SIZE = 128
TINY = 64  # the smallest image size allowed, for tests about files rather than pictures
COUNTS = {"num_train": 12, "num_val": 6, "num_test": 3}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ap10k"
    return generate_synthetic(out, seed=3, image_size=SIZE, **COUNTS)


@pytest.fixture(scope="module")
def samples() -> list[SyntheticImage]:
    return [render_synthetic_image(np.random.default_rng([11, i]), SIZE) for i in range(60)]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_files_follow_the_ap10k_layout(dataset: Path) -> None:
    image_ids, ann_ids = [], []
    for split in SPLITS:
        path = dataset / "annotations" / f"ap10k-{split}-split1.json"
        coco = _load(path)
        assert list(coco) == ["info", "licenses", "images", "annotations", "categories"]
        assert len(coco["images"]) == COUNTS[f"num_{split}"]
        for im in coco["images"]:
            assert set(im) == {"license", "id", "file_name", "width", "height", "background"}
            assert im["file_name"] == f"{im['id']:012d}.jpg" and 1 <= im["background"] <= 8
            assert cv2.imread(str(dataset / "data" / im["file_name"])).shape == (SIZE, SIZE, 3)
            image_ids.append(im["id"])
        for ann in coco["annotations"]:
            assert set(ann) == {
                "id",
                "image_id",
                "category_id",
                "bbox",
                "area",
                "iscrowd",
                "num_keypoints",
                "keypoints",
            }
            x, y, w, h = ann["bbox"]
            assert ann["area"] == w * h and ann["iscrowd"] == 0
            assert x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE
            kps = np.array(ann["keypoints"]).reshape(-1, 3)
            assert kps.shape == (17, 3) and set(kps[:, 2]) <= {0, 2}
            assert ann["num_keypoints"] == (kps[:, 2] > 0).sum()
            assert (kps[kps[:, 2] == 0] == 0).all()
            ann_ids.append(ann["id"])
        assert [(c["id"], c["name"], c["supercategory"]) for c in coco["categories"]] == [
            (s.id, s.name, s.family) for s in AP10K_CATEGORIES
        ]
        assert all(c["keypoints"] == list(AP10K.keypoint_names) for c in coco["categories"])
        assert coco["categories"][0]["skeleton"] == [[a + 1, b + 1] for a, b in AP10K.skeleton]
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)


def test_files_pass_the_validating_coco_reader(dataset: Path) -> None:
    for split in SPLITS:
        path = annotation_path(dataset, split)
        coco = load_coco_keypoints(path, "ap10k")
        assert len(coco.instances) == len(_load(path)["annotations"])
        assert coco.image_root == dataset / "data"
        assert all(coco.image_path(i).is_file() for i in coco.images)


def test_every_image_has_one_to_three_animals(dataset: Path, samples: list[SyntheticImage]) -> None:
    assert {len(s.animals) for s in samples} == {1, 2, 3}
    for split in SPLITS:
        coco = _load(annotation_path(dataset, split))
        per_image = np.bincount([a["image_id"] for a in coco["annotations"]])
        assert all(1 <= per_image[im["id"]] <= 3 for im in coco["images"])


def test_same_seed_gives_identical_files_and_another_seed_differs(dataset: Path, tmp_path: Path) -> None:
    again = generate_synthetic(tmp_path / "again", seed=3, image_size=SIZE, **COUNTS)
    other = generate_synthetic(tmp_path / "other", seed=4, image_size=SIZE, **COUNTS)
    for split in SPLITS:
        assert annotation_path(again, split).read_bytes() == annotation_path(dataset, split).read_bytes()
        assert annotation_path(other, split).read_bytes() != annotation_path(dataset, split).read_bytes()
    for image in sorted((dataset / "data").iterdir()):
        assert (again / "data" / image.name).read_bytes() == image.read_bytes()


def test_parallel_workers_write_the_same_files_as_one_process(dataset: Path, tmp_path: Path) -> None:
    parallel = generate_synthetic(tmp_path / "parallel", seed=3, image_size=SIZE, workers=2, **COUNTS)
    written = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    for name in written:
        assert (parallel / name).read_bytes() == (dataset / name).read_bytes(), name


def test_a_split_does_not_depend_on_the_size_of_the_others(tmp_path: Path) -> None:
    common = {"seed": 5, "num_val": 2, "num_test": 0, "image_size": TINY}
    small = generate_synthetic(tmp_path / "a", num_train=2, **common)
    large = generate_synthetic(tmp_path / "b", num_train=4, **common)
    val_small, val_large = (_load(annotation_path(d, "val")) for d in (small, large))

    def without_ids(anns: list[dict]) -> list[dict]:
        return [{k: v for k, v in a.items() if k not in ("id", "image_id")} for a in anns]

    assert without_ids(val_small["annotations"]) == without_ids(val_large["annotations"])


def test_ensure_reuses_a_matching_dataset_and_regenerates_otherwise(tmp_path: Path) -> None:
    counts = {"num_train": 2, "num_val": 1, "num_test": 1, "image_size": TINY}
    out = ensure_synthetic(tmp_path / "cache", seed=1, **counts)
    stamp = annotation_path(out, "train").stat().st_mtime_ns
    ensure_synthetic(out, seed=1, **counts)
    assert annotation_path(out, "train").stat().st_mtime_ns == stamp
    ensure_synthetic(out, seed=2, **counts)
    assert _load(out / MANIFEST_NAME)["seed"] == 2 and _load(out / MANIFEST_NAME)["complete"]
    next((out / "data").iterdir()).unlink()  # a lost image makes the cache stale
    ensure_synthetic(out, seed=2, **counts)
    assert len(list((out / "data").iterdir())) == 4


def test_refuses_to_overwrite_a_folder_that_is_not_synthetic(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    with pytest.raises(FileExistsError, match="synthetic.json"):
        generate_synthetic(tmp_path, num_train=1, num_val=1, image_size=TINY)


def test_the_cli_refuses_a_folder_that_is_not_synthetic_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "annotations").mkdir()
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path), "--num-train", "1", "--num-val", "1", "--image-size", str(TINY)])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and line.startswith(f"error: {tmp_path} already holds dataset folders")
    assert [p.name for p in tmp_path.iterdir()] == ["annotations"]


def test_rejects_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        generate_synthetic(tmp_path / "w", workers=0)
    with pytest.raises(ValueError, match="num_val"):
        generate_synthetic(tmp_path, num_train=1, num_val=0)
    with pytest.raises(ValueError, match="image_size"):
        generate_synthetic(tmp_path, num_train=1, num_val=1, image_size=32)


def test_cli_writes_the_dataset_and_prints_one_line_per_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--out", str(tmp_path / "cli"), "--num-train", "2", "--num-val", "1", "--image-size", str(TINY)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("ap10k-train-split1.json: 2 images")
    # --num-test defaults to --num-val
    assert len(_load(annotation_path(tmp_path / "cli", "test"))["images"]) == 1


def test_catalogue_has_several_species_per_family_and_the_sample_covers_the_zero_shot_families(
    samples: list[SyntheticImage],
) -> None:
    per_family: dict[str, set[str]] = {}
    for s in SYNTHETIC_SPECIES:
        per_family.setdefault(s.family, set()).add(s.name)
    assert {"antelope", "cow", "sheep", "buffalo"} <= per_family["Bovidae"]
    assert {"dog", "fox", "wolf"} <= per_family["Canidae"]
    assert {"cat", "tiger", "lion", "leopard"} <= per_family["Felidae"]
    assert per_family["Equidae"] == {"horse", "zebra"} and per_family["Cricetidae"] == {"hamster"}
    seen = {a.species.family for s in samples for a in s.animals}
    assert {"Bovidae", "Canidae", "Felidae", "Equidae", "Cricetidae"} <= seen
    assert len({a.species.name for s in samples for a in s.animals}) >= 15


def test_keypoints_sit_where_their_names_say(samples: list[SyntheticImage]) -> None:
    animals = [a for s in samples for a in s.animals]
    assert any(a.facing_right for a in animals) and not all(a.facing_right for a in animals)
    for a in animals:
        p = a.upright_positions
        tail = p[KP["root_of_tail"]]
        assert np.linalg.norm(p[KP["nose"]] - tail) > np.linalg.norm(p[KP["neck"]] - tail)
        assert (p[KP["nose"], 0] > tail[0]) == a.facing_right
        for side in ("left", "right"):
            for top, mid, paw in (("shoulder", "elbow", "front_paw"), ("hip", "knee", "back_paw")):
                ys = p[[KP[f"{side}_{top}"], KP[f"{side}_{mid}"], KP[f"{side}_{paw}"]], 1]
                assert ys[0] < ys[1] < ys[2], (a.species.name, side, top)
        # Facing right shows the right side; far-side points appear higher (smaller y).
        near, far = ("right", "left") if a.facing_right else ("left", "right")
        for part in ("shoulder", "hip"):
            assert p[KP[f"{near}_{part}"], 1] > p[KP[f"{far}_{part}"], 1]
        assert a.keypoints[KP[f"{far}_eye"], 2] == 0


def test_near_legs_are_drawn_on_top_of_the_far_legs(samples: list[SyntheticImage]) -> None:
    # Near legs are lighter than the coat and far legs darker, so where both joints are in view the
    # near one is brighter, or as bright where the near leg covers the far joint (noise: 10 levels).
    brighter = total = 0
    for s in samples:
        if len(s.animals) != 1:
            continue
        a = s.animals[0]
        near, far = ("right", "left") if a.facing_right else ("left", "right")
        gray = cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(float)
        for part in ("elbow", "knee"):
            pn, pf = (np.rint(a.positions[KP[f"{side}_{part}"]]).astype(int) for side in (near, far))
            if all(0 <= v < SIZE for v in (*pn, *pf)):
                total += 1
                brighter += gray[pn[1], pn[0]] > gray[pf[1], pf[0]] - 10
    assert total >= 20 and brighter / total > 0.9


def test_labels_are_zero_exactly_outside_the_frame_behind_later_animals_or_for_the_far_eye(
    samples: list[SyntheticImage],
) -> None:
    out_of_frame = hidden = 0
    for s in samples:
        for i, a in enumerate(s.animals):
            xy = np.rint(a.positions)
            inside = ((xy >= 0) & (xy <= SIZE - 1)).all(1)
            ix = np.clip(xy, 0, SIZE - 1).astype(int)
            covered = np.zeros(17, bool)
            for later in s.animals[i + 1 :]:
                covered |= later.mask[ix[:, 1], ix[:, 0]]
            far_eye = KP["left_eye"] if a.facing_right else KP["right_eye"]
            expected = inside & ~covered
            expected[far_eye] = False
            np.testing.assert_array_equal(a.keypoints[:, 2] > 0, expected)
            np.testing.assert_array_equal(a.keypoints[expected, :2], xy[expected])
            out_of_frame += (~inside).sum()
            hidden += (inside & covered).sum()
            x, y, w, h = a.bbox
            assert (x, y, w, h) == cv2.boundingRect(a.mask.astype(np.uint8))
            assert 0.2 * SIZE <= max(w, h) <= SIZE
    assert out_of_frame > 0 and hidden > 0


@pytest.mark.parametrize("dataset", ["animalpose", "coco"])
def test_other_layouts_are_read_by_the_real_loaders_with_consistent_keypoints(tmp_path, dataset):
    from clamp.keypoints import get_keypoint_spec
    from clamp.lightning.datamodule import PoseDataModule
    from clamp.synthetic.datasets import LAYOUTS, relabel

    out = generate_synthetic(
        tmp_path / dataset, dataset=dataset, seed=3, image_size=TINY, num_train=6, num_val=3, num_test=0
    )
    ap10k = generate_synthetic(tmp_path / "ap10k", seed=3, image_size=TINY, num_train=6, num_val=3, num_test=0)
    spec = get_keypoint_spec(dataset)
    for split in ("train", "val"):
        data = load_coco_keypoints(
            annotation_path(out, split, dataset),
            spec,
            image_root=out if dataset == "animalpose" else out / f"{split}2017",
        )
        assert data.instances and all(data.image_path(i).is_file() for i in data.images)
        same_animals = load_coco_keypoints(annotation_path(ap10k, split), "ap10k")
        for ours, drawn in zip(data.instances, same_animals.instances):
            np.testing.assert_array_equal(ours.keypoints, relabel(drawn.keypoints, LAYOUTS[dataset].mapping))
    # Left stays left: each flip pair of the layout maps to a left/right pair of the drawn keypoints.
    mapping = LAYOUTS[dataset].mapping
    for a, b in spec.flip_pairs:
        mirrored = {AP10K.flip_index[i] for i in mapping[a]}
        assert mirrored == set(mapping[b]), (spec.keypoint_names[a], spec.keypoint_names[b])
    splits = {
        "train": {"ann": annotation_path(out, "train", dataset).relative_to(out).as_posix()},
        "val": {"ann": annotation_path(out, "val", dataset).relative_to(out).as_posix()},
    }
    for stage, images in (
        ("train", "." if dataset == "animalpose" else "train2017"),
        ("val", "." if dataset == "animalpose" else "val2017"),
    ):
        splits[stage]["images"] = images
    splits["test"] = splits["val"]
    datamodule = PoseDataModule(
        keypoints=dataset,
        root=str(out),
        splits=splits,
        split={"mode": "full"},
        input_size=(64, 64),
        heatmap_size=(16, 16),
        coarse_size=(2, 2),
        batch_size=2,
        num_workers=0,
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["heatmap"].shape[1] == spec.num_keypoints
