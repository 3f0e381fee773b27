"""A small DeepLabCut project made from the synthetic AP-10K animals, as DeepLabCut writes one.

::

    python scripts/dlc_example.py --data data/synthetic --out /tmp/dlc-zoo --images 200
    python -m clamp.data.convert --from dlc /tmp/dlc-zoo --out data/zoo

``config.yaml`` (Task, scorer, bodyparts = AP-10K's names, skeleton by name) and per video
``labeled-data/<video>/`` with the images and ``CollectedData_<scorer>.csv`` (header rows scorer,
[individuals,] bodyparts, coords; three index columns, or one with ``--index-columns 1``). The tests of
``clamp.data.convert`` build their projects with it; the README's converter figures come from it.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import yaml

from clamp.keypoints import AP10K

NAMES = list(AP10K.keypoint_names)
SKELETON = [[NAMES[a], NAMES[b]] for a, b in AP10K.skeleton]


def synthetic_animals(synthetic_root: Path, count: int) -> list[tuple[Path, np.ndarray]]:
    """The first ``count`` synthetic training images with one animal each, and its (17, 2) points (NaN: unlabelled)."""
    data = json.loads((synthetic_root / "annotations" / "ap10k-train-split1.json").read_text())
    per_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    found = []
    for image in data["images"]:
        anns = per_image.get(image["id"], [])
        if len(anns) != 1:
            continue
        triples = np.asarray(anns[0]["keypoints"], dtype=float).reshape(-1, 3)
        points = np.where(triples[:, 2:] > 0, triples[:, :2] + 0.25, np.nan)  # off the integer grid
        found.append((synthetic_root / "data" / image["file_name"], points))
        if len(found) == count:
            break
    return found


def write_dlc_project(
    root: Path, animals: list[tuple[Path, np.ndarray]], *, index_columns: int = 3, individuals: int = 0
) -> dict[str, np.ndarray]:
    """A DeepLabCut project as DLC writes it: config.yaml, labeled-data/<video>/ images and CollectedData CSVs.

    Two videos, half the images each; ``index_columns`` 3 (DLC >= 2.2) or 1 (older: one path column);
    ``individuals`` > 0 makes a multi-animal project (each image's animal labelled as each individual,
    shifted by 2 px per individual, plus one uniquebodyparts point). Returns the expected points per file.
    """
    config = {"Task": "zoo", "scorer": "ann", "date": "Jan1", "project_path": str(root), "skeleton": SKELETON}
    if individuals:
        config |= {
            "multianimalproject": True,
            "bodyparts": "MULTI!",
            "multianimalbodyparts": NAMES,
            "uniquebodyparts": ["food"],
            "individuals": [f"mouse{i + 1}" for i in range(individuals)],
        }
    else:
        config["bodyparts"] = NAMES
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    expected = {}
    videos = {"walk": animals[: len(animals) // 2], "run": animals[len(animals) // 2 :]}
    for video, items in videos.items():
        folder = root / "labeled-data" / video
        folder.mkdir(parents=True)
        who = [f"mouse{i + 1}" for i in range(individuals)] or [""]
        columns = [(w, part, axis) for w in who for part in NAMES for axis in ("x", "y")]
        if individuals:
            columns += [("single", "food", "x"), ("single", "food", "y")]
        pad = [""] * (index_columns - 1)
        rows = [["scorer", *pad, *["ann"] * len(columns)]]
        if individuals:
            rows.append(["individuals", *pad, *[c[0] for c in columns]])
        rows += [["bodyparts", *pad, *[c[1] for c in columns]], ["coords", *pad, *[c[2] for c in columns]]]
        for n, (image, points) in enumerate(items):
            name = f"img{n:03d}.png"
            shutil.copyfile(image, folder / name)
            index = ["labeled-data", video, name] if index_columns == 3 else [f"labeled-data/{video}/{name}"]
            values = []
            for i in range(len(who)):
                shifted = points + 2.0 * i
                values += ["" if np.isnan(v) else repr(float(v)) for v in shifted.ravel()]
                expected[f"images/{video}/{name}#{i}"] = shifted
            if individuals:
                values += ["5.0", "6.0"]
            rows.append([*index, *values])
        with (folder / "CollectedData_ann.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"), help="a synthetic AP-10K root")
    parser.add_argument("--out", type=Path, required=True, help="the new project folder")
    parser.add_argument("--images", type=int, default=200, help="labelled images (one animal each)")
    parser.add_argument("--index-columns", type=int, choices=(1, 3), default=3)
    parser.add_argument("--individuals", type=int, default=0, help="> 0: a multi-animal project")
    args = parser.parse_args()
    animals = synthetic_animals(args.data, args.images)
    write_dlc_project(args.out, animals, index_columns=args.index_columns, individuals=args.individuals)
    print(f"{args.out}: a DeepLabCut project of {len(animals)} labelled images")


if __name__ == "__main__":
    main()
