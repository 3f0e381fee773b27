"""Split builders and the manifest CLI on a small synthetic AP-10K-format file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clamp.data.coco import load_coco_keypoints
from clamp.data.splits import SplitError, SplitManifest, apply_split, build_split, main
from clamp.keypoints import AP10K, AP10K_CATEGORIES

# Species used by the synthetic files: every family of the paper's transfer pairs plus Ursidae as
# a family no split asks for. Arctic fox (id 7) is left without instances, as in the real files.
FAMILIES = ("Bovidae", "Canidae", "Felidae", "Equidae", "Cricetidae", "Ursidae")
SPECIES = [s for s in AP10K_CATEGORIES if s.family in FAMILIES and s.name != "arctic fox"]
FAMILY_OF = {s.id: s.family for s in AP10K_CATEGORIES}
PAPER_PAIRS = [
    ("Bovidae", "Canidae"),
    ("Canidae", "Felidae"),
    ("Bovidae", "Equidae"),
    ("Bovidae", "Felidae"),
    ("Canidae", "Cricetidae"),
    ("Canidae", "Equidae"),
]
K = 4


def count_for(category_id: int) -> int:
    """Instances per species: 2..6, so with K=4 some species are short."""
    return 2 + category_id % 5


def make_annotations(pairs: list[tuple[int, int]], first_ann_id: int = 1, seed: int = 0) -> dict[str, Any]:
    """An AP-10K-format dict with one annotation per (image_id, category_id) pair, all 54 categories."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480}
        for i in sorted({image_id for image_id, _ in pairs})
    ]
    annotations = []
    for n, (image_id, category_id) in enumerate(pairs):
        xy = rng.uniform(110, 300, size=(AP10K.num_keypoints, 2)).round()
        vis = np.full(AP10K.num_keypoints, 2)
        vis[n % AP10K.num_keypoints] = 0
        kpts = np.concatenate([xy * (vis[:, None] > 0), vis[:, None]], axis=1)
        annotations.append(
            {
                "id": first_ann_id + n,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [100, 100, 220, 220],
                "area": 48400,
                "iscrowd": 0,
                "num_keypoints": int((vis > 0).sum()),
                "keypoints": kpts.reshape(-1).astype(int).tolist(),
            }
        )
    categories = [
        {"id": s.id, "name": s.name, "supercategory": s.family, "keypoints": list(AP10K.keypoint_names)}
        for s in AP10K_CATEGORIES
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def species_pairs(image_offset: int) -> list[tuple[int, int]]:
    pairs = []
    for s in SPECIES:
        for j in range(count_for(s.id)):
            pairs.append((image_offset + 100 * s.id + j, s.id))
    pairs.append((image_offset + 100 * SPECIES[0].id, SPECIES[1].id))  # a second animal in one image
    return pairs


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write(tmp_path / "train.json", make_annotations(species_pairs(0)))


@pytest.fixture
def val_file(tmp_path: Path) -> Path:
    return write(tmp_path / "val.json", make_annotations(species_pairs(50_000), first_ann_id=10_000, seed=1))


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_same_inputs_and_seed_give_byte_identical_manifests(train_file, tmp_path):
    outs = [tmp_path / "a" / "m.json", tmp_path / "b" / "m.json"]
    for out in outs:
        assert run_cli("--ann", train_file, "--mode", "kshot", "--k", K, "--seed", 3, "--out", out) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_text().endswith("}\n")
    assert str(tmp_path) not in outs[0].read_text()  # no absolute paths
    assert SplitManifest.read(outs[0]).to_json() == outs[0].read_text()


def test_different_seed_draws_different_kshot_instances(train_file, tmp_path):
    ids = []
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}.json"
        assert run_cli("--ann", train_file, "--mode", "kshot", "--k", K, "--seed", seed, "--out", out) == 0
        ids.append(SplitManifest.read(out).parts["train"].instance_ids)
    assert ids[0] != ids[1]


def test_kshot_draw_does_not_depend_on_record_order(train_file, tmp_path):
    data = json.loads(train_file.read_text())
    data["annotations"].reverse()
    shuffled = load_coco_keypoints(write(tmp_path / "reversed.json", data), "ap10k")
    original = load_coco_keypoints(train_file, "ap10k")
    a = build_split(original, "kshot", k=K, seed=5).parts["train"].instance_ids
    b = build_split(shuffled, "kshot", k=K, seed=5).parts["train"].instance_ids
    assert a == b


def test_kshot_takes_k_per_species_and_reports_short_ones(train_file):
    train = load_coco_keypoints(train_file, "ap10k")
    manifest = build_split(train, "kshot", k=K, seed=0)
    available = {s.name: sum(1 for i in train.instances if i.category_id == s.id) for s in SPECIES}
    assert manifest.parts["train"].species_counts == {name: min(n, K) for name, n in available.items()}
    assert manifest.notes["short_species"] == {name: n for name, n in available.items() if n < K}
    assert manifest.notes["short_species"]  # the synthetic file does have short species
    assert "arctic fox" in manifest.notes["absent_species"]
    assert (manifest.seed, manifest.k) == (0, K)


@pytest.mark.parametrize("train_family, test_family", PAPER_PAIRS)
def test_family_split_holds_only_its_family(train_file, val_file, train_family, test_family):
    train = load_coco_keypoints(train_file, "ap10k")
    val = load_coco_keypoints(val_file, "ap10k")
    manifest = build_split(
        train, "family", train_family=train_family, evaluation={"test": val}, test_family=test_family
    )
    train_part, test_part = manifest.parts["train"], manifest.parts["test"]
    train_cats = {i.id: i.category_id for i in train.instances}
    val_cats = {i.id: i.category_id for i in val.instances}
    assert {FAMILY_OF[train_cats[i]] for i in train_part.instance_ids} == {train_family}
    assert {FAMILY_OF[val_cats[i]] for i in test_part.instance_ids} == {test_family}
    assert len(train_part.instance_ids) == sum(FAMILY_OF[c] == train_family for c in train_cats.values())
    assert len(test_part.instance_ids) == sum(FAMILY_OF[c] == test_family for c in val_cats.values())
    assert set(test_part.instance_ids) <= set(val_cats)  # test comes from the val file
    assert train_part.family_counts == {train_family: len(train_part.instance_ids)}
    assert manifest.sources["test"]["file"] == "val.json"
    assert apply_split(val, manifest, "test").instances[0].id in test_part.instance_ids


def test_unknown_family_lists_the_families_and_exits_nonzero(train_file, val_file, tmp_path, capsys):
    code = run_cli(
        "--ann",
        train_file,
        "--test-ann",
        val_file,
        "--mode",
        "family",
        "--train-family",
        "Bovidea",
        "--test-family",
        "Canidae",
        "--out",
        tmp_path / "m.json",
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Bovidea" in err and "'Bovidae'" in err and "'Vespertilionidae'" in err
    assert not (tmp_path / "m.json").exists()


def test_family_without_instances_is_an_error(train_file):
    train = load_coco_keypoints(train_file, "ap10k")
    with pytest.raises(SplitError, match="'Talpidae' has no usable instance"):
        build_split(train, "family", train_family="Talpidae")


def test_scarcenet_list_20_has_1000_unique_ids(fixtures_dir):
    ids = json.loads((fixtures_dir / "ap10k_scarcenet_label_lists" / "annotation_list_20").read_text())
    assert len(ids) == 1000 and len(set(ids)) == 1000


def test_idlist_selects_listed_images_and_reports_missing_ids(fixtures_dir, tmp_path):
    list_path = fixtures_dir / "ap10k_scarcenet_label_lists" / "annotation_list_20"
    listed = json.loads(list_path.read_text())
    present = listed[:30]
    unlisted = [i for i in range(1, 60) if i not in set(listed)][:10]
    pairs = [(image_id, SPECIES[n % len(SPECIES)].id) for n, image_id in enumerate(present + unlisted)]
    pairs.append((present[0], SPECIES[1].id))  # two instances in one listed image
    train = load_coco_keypoints(write(tmp_path / "train.json", make_annotations(pairs)), "ap10k")
    manifest = build_split(train, "idlist", ids=list_path)
    part = manifest.parts["train"]
    assert part.image_ids == tuple(sorted(present))
    assert len(part.instance_ids) == len(present) + 1
    assert manifest.notes["missing_image_ids"] == sorted(set(listed) - set(present))
    assert manifest.sources["ids"]["file"] == "annotation_list_20"
    assert "duplicate_ids_collapsed" not in manifest.notes


def test_idlist_collapses_duplicate_ids(train_file):
    train = load_coco_keypoints(train_file, "ap10k")
    image_id = train.instances[0].image_id
    manifest = build_split(train, "idlist", ids=[image_id, image_id, 999_999])
    assert manifest.parts["train"].image_ids == (image_id,)
    assert manifest.notes["duplicate_ids_collapsed"] == 1
    assert manifest.notes["missing_image_ids"] == [999_999]


def test_apply_split_rejects_a_manifest_from_another_file(train_file, tmp_path):
    train = load_coco_keypoints(train_file, "ap10k")
    manifest = build_split(train, "kshot", k=K, seed=0)
    kept = apply_split(train, manifest).instances
    assert sorted(i.id for i in kept) == list(manifest.parts["train"].instance_ids)
    data = json.loads(train_file.read_text())
    data["images"].append({"id": 123_456, "file_name": "x.jpg", "width": 10, "height": 10})
    other = load_coco_keypoints(write(tmp_path / "train.json", data), "ap10k")
    with pytest.raises(SplitError, match="sha256.*rebuild the split"):
        apply_split(other, manifest)


def test_fraction_draws_a_seeded_share_of_all_instances(train_file):
    train = load_coco_keypoints(train_file, "ap10k")
    manifest = build_split(train, "fraction", fraction=0.25, seed=0)
    ids = manifest.parts["train"].instance_ids
    assert len(ids) == round(0.25 * len(train.instances)) and len(set(ids)) == len(ids)
    assert build_split(train, "fraction", fraction=0.25, seed=0).parts["train"].instance_ids == ids
    assert build_split(train, "fraction", fraction=0.25, seed=1).parts["train"].instance_ids != ids
    assert (manifest.seed, manifest.fraction) == (0, 0.25)
    with pytest.raises(SplitError, match="0 < fraction <= 1"):
        build_split(train, "fraction", fraction=1.5)


def test_full_split_keeps_every_usable_instance(train_file):
    train = load_coco_keypoints(train_file, "ap10k")
    manifest = build_split(train, "full")
    assert len(manifest.parts["train"].instance_ids) == len(train.instances)
    assert manifest.seed is None and set(manifest.parts) == {"train"}


def test_module_cli_prints_family_counts_and_fails_cleanly(train_file, tmp_path):
    out = tmp_path / "full.json"
    ok = subprocess.run(
        [sys.executable, "-m", "clamp.data.splits", "--ann", str(train_file), "--mode", "full", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "Felidae:" in ok.stdout and out.is_file()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "clamp.data.splits",
            "--ann",
            str(tmp_path / "nope.json"),
            "--mode",
            "full",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope.json" in bad.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Dog", "'Dog' is a species of the family Canidae"),
        ("jagur", "did you mean the species 'jaguar' (family Felidae)"),
    ],
)
def test_a_species_given_as_a_family_is_named_with_its_family(train_file, name, expected):
    train = load_coco_keypoints(train_file, "ap10k")
    with pytest.raises(SplitError, match=re.escape(expected)):
        build_split(train, "family", train_family=name)
