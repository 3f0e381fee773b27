"""Synthetic datasets in the real datasets' own file layouts, so the real loaders read them unchanged.

The drawn animals (:mod:`clamp.synthetic.render`) carry AP-10K's 17 keypoints; each layout relabels them:

* ``ap10k``: ``annotations/ap10k-{train,val,test}-split1.json`` + ``data/<12-digit id>.jpg``, all 54
  AP-10K categories (species and families), the keypoints as drawn.
* ``animalpose``: mmpose's conversion, ``annotations/animalpose_{train,val}.json`` with images under
  ``images/``, one category ("animal"), Animal-Pose's 20 keypoints in mmpose order: the drawn eyes,
  nose, tail root, elbows and paws, and points between drawn ones for the ear bases, throat, withers
  and the front/back knees (:data:`ANIMALPOSE_FROM_AP10K`).
* ``coco``: ``annotations/person_keypoints_{train,val}2017.json`` with ``train2017/`` and ``val2017/``,
  category "person", COCO's 17 keypoints taken one-for-one from the drawn ones (eyes, nose, shoulders,
  elbows, wrists = front paws, hips, knees, ankles = back paws), the ears between eye and neck
  (:data:`COCO_FROM_AP10K`). They are animals
  labelled in the human layout: enough to run Table 11's code path offline, not a human dataset.

A derived point is labelled only when every point it is made from is. Left stays left, so flips stay
consistent in every layout. ``synthetic.json`` records the generation parameters: a folder is reused
when they match and regenerated otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import shutil
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clamp.data.layouts import LAYOUTS as FILE_LAYOUTS
from clamp.data.layouts import DatasetLayout
from clamp.errors import ClampError
from clamp.keypoints import ANIMALPOSE, AP10K, AP10K_CATEGORIES, COCO, KeypointSpec
from clamp.synthetic.render import GENERATOR_VERSION, SyntheticAnimal, render_synthetic_image

logger = logging.getLogger(__name__)

#: The ``info.contributor`` of every file written here: how a checkpoint knows it saw synthetic data.
SYNTHETIC_CONTRIBUTOR = "clamp.synthetic"
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "synthetic.json"


class NotSyntheticFolderError(ClampError, FileExistsError):
    """The output folder holds a dataset that clamp.synthetic did not write; it is never overwritten."""


# Each target keypoint as the mean of AP-10K keypoint indices (0 L_eye, 1 R_eye, 2 nose, 3 neck,
# 4 root_of_tail, 5/8 shoulders, 6/9 elbows, 7/10 front paws, 11/14 hips, 12/15 knees, 13/16 back paws).
ANIMALPOSE_FROM_AP10K: tuple[tuple[int, ...], ...] = (
    (0,),
    (1,),
    (0, 3),
    (1, 3),
    (2,),
    (2, 3),
    (4,),
    (3, 5, 8),
    (6,),
    (9,),
    (12,),
    (15,),
    (6, 7),
    (9, 10),
    (12, 13),
    (15, 16),
    (7,),
    (10,),
    (13,),
    (16,),
)
COCO_FROM_AP10K: tuple[tuple[int, ...], ...] = (
    (2,),
    (0,),
    (1,),
    (0, 3),
    (1, 3),
    (5,),
    (8,),
    (6,),
    (9,),
    (7,),
    (10,),
    (11,),
    (14,),
    (12,),
    (15,),
    (13,),
    (16,),
)


@dataclass(frozen=True)
class Layout:
    """A synthetic dataset: the real dataset's file layout and how the drawn keypoints map to its keypoints."""

    spec: KeypointSpec
    files: DatasetLayout
    mapping: tuple[tuple[int, ...], ...] | None  # None: the AP-10K keypoints as drawn
    description: str

    @property
    def annotation(self) -> str:
        return self.files.annotation

    @property
    def images(self) -> str:
        return self.files.images


LAYOUTS: dict[str, Layout] = {
    "ap10k": Layout(AP10K, FILE_LAYOUTS["ap10k"], None, "Synthetic AP-10K-style quadrupeds"),
    "animalpose": Layout(
        ANIMALPOSE,
        FILE_LAYOUTS["animalpose"],
        ANIMALPOSE_FROM_AP10K,
        "Synthetic quadrupeds in the Animal-Pose (mmpose) layout",
    ),
    "coco": Layout(
        COCO, FILE_LAYOUTS["coco"], COCO_FROM_AP10K, "Synthetic quadrupeds labelled in the COCO person-keypoint layout"
    ),
}


def _layout(dataset: str) -> Layout:
    if dataset not in LAYOUTS:
        raise ValueError(f"synthetic dataset must be one of {sorted(LAYOUTS)}, got {dataset!r}")
    return LAYOUTS[dataset]


def annotation_path(out_dir: str | Path, split: str, dataset: str = "ap10k") -> Path:
    """The annotation file of ``split`` in ``dataset``'s layout (e.g. ``annotations/ap10k-val-split1.json``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(out_dir) / _layout(dataset).annotation.format(split=split)


def relabel(keypoints: np.ndarray, mapping: tuple[tuple[int, ...], ...] | None) -> np.ndarray:
    """(K', 3) keypoints of another layout from (17, 3) AP-10K ones (module docstring); ints, v in {0, 2}."""
    if mapping is None:
        return keypoints
    out = np.zeros((len(mapping), 3), dtype=keypoints.dtype)
    for target, sources in enumerate(mapping):
        points = keypoints[list(sources)]
        if (points[:, 2] > 0).all():
            out[target, :2] = np.round(points[:, :2].mean(axis=0))
            out[target, 2] = 2
    return out


def _params(dataset: str, seed: int, num_train: int, num_val: int, num_test: int | None, image_size: int) -> dict:
    _layout(dataset)
    num_test = num_val if num_test is None else num_test
    for name, value, low in (
        ("seed", seed, 0),
        ("num_train", num_train, 1),
        ("num_val", num_val, 1),
        ("num_test", num_test, 0),
        ("image_size", image_size, 64),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"synthetic data: {name} must be an integer >= {low}, got {value!r}")
    return {
        "generator": SYNTHETIC_CONTRIBUTOR,
        "version": GENERATOR_VERSION,
        "dataset": dataset,
        "seed": int(seed),
        "image_size": int(image_size),
        "num_train": int(num_train),
        "num_val": int(num_val),
        "num_test": int(num_test),
    }


def _categories(layout: Layout) -> list[dict]:
    skeleton = [[a + 1, b + 1] for a, b in layout.spec.skeleton]  # the JSON stores it 1-based
    names = list(layout.spec.keypoint_names)
    if layout.spec is AP10K:
        return [
            {"id": s.id, "name": s.name, "supercategory": s.family, "keypoints": names, "skeleton": skeleton}
            for s in AP10K_CATEGORIES
        ]
    name = "person" if layout.spec is COCO else "animal"
    return [{"id": 1, "name": name, "supercategory": name, "keypoints": names, "skeleton": skeleton}]


def _annotation(layout: Layout, animal: SyntheticAnimal, annotation_id: int, image_id: int) -> dict:
    keypoints = relabel(animal.keypoints, layout.mapping)
    x, y, w, h = animal.bbox
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": animal.species.id if layout.spec is AP10K else 1,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "keypoints": [int(v) for v in keypoints.ravel()],
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def _image_folders(out: Path, layout: Layout) -> set[Path]:
    return {out / layout.images.format(split=split) for split in SPLITS}


def _draw_image(seed: int, split_index: int, index: int, image_size: int, path: str) -> tuple[list, int]:
    """Render one image to ``path`` (JPEG); its animals and background name (a worker's job)."""
    sample = render_synthetic_image(np.random.default_rng([seed, split_index, index]), image_size)
    cv2.imwrite(path, sample.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return sample.animals, sample.background


def _drawn_images(jobs: list[tuple[int, int, int, int, str]], workers: int) -> Iterator[tuple[list, int]]:
    """``_draw_image`` over ``jobs`` in order, in ``workers`` processes when more than one."""
    if workers <= 1 or len(jobs) < 2:
        yield from (_draw_image(*job) for job in jobs)
        return
    # spawn: the caller may be a training process whose threads (torch, OpenCV) must not be forked.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        yield from pool.map(_draw_image, *zip(*jobs), chunksize=max(1, len(jobs) // (8 * workers)))


def generate_synthetic(
    out_dir: str | Path,
    *,
    dataset: str = "ap10k",
    seed: int = 0,
    num_train: int = 1000,
    num_val: int = 200,
    num_test: int | None = None,
    image_size: int = 256,
    workers: int = 1,
) -> Path:
    """Write a synthetic dataset in ``dataset``'s layout to ``out_dir`` and return ``out_dir``.

    ``num_test`` defaults to ``num_val``. Image and annotation ids run on across train, val and test;
    each image is drawn from its own generator seeded by (seed, split, index), so a split's content
    does not depend on the other splits, and the same seed draws the same animals in every layout. A
    previous synthetic dataset in ``out_dir`` is replaced; a folder holding other data is refused.
    ``workers`` > 1 draws the images in that many processes; the files are the same.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"synthetic data: workers must be an integer >= 1, got {workers!r}")
    params = _params(dataset, seed, num_train, num_val, num_test, image_size)
    layout = _layout(dataset)
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    folders = _image_folders(out, layout) | {out / "annotations"}
    if manifest.exists():
        manifest.unlink()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    elif any(folder.exists() for folder in folders):
        raise NotSyntheticFolderError(
            f"{out} already holds dataset folders but no {MANIFEST_NAME}, so it is not a synthetic "
            "dataset written by clamp.synthetic; refusing to overwrite it. Choose another output "
            "folder or delete this one."
        )
    # Written first and marked incomplete, so an interrupted run is recognised as ours and redone.
    _write_json(manifest, {**params, "complete": False})
    image_id = annotation_id = 1
    digests = {}
    for split_index, split in enumerate(SPLITS):
        folder_name = layout.images.format(split=split)
        (out / folder_name).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        count = params[f"num_{split}"]
        file_names = [f"{image_id + index:012d}.jpg" for index in range(count)]
        jobs = [
            (params["seed"], split_index, index, image_size, str(out / folder_name / file_names[index]))
            for index in range(count)
        ]
        for file_name, (animals, background) in zip(file_names, _drawn_images(jobs, workers)):
            name = f"{folder_name}/{file_name}" if layout.files.names_relative_to_root else file_name
            images.append(
                {
                    "license": 1,
                    "id": image_id,
                    "file_name": name,
                    "width": image_size,
                    "height": image_size,
                    "background": background,
                }
            )
            for animal in animals:
                annotations.append(_annotation(layout, animal, annotation_id, image_id))
                annotation_id += 1
            image_id += 1
        path = annotation_path(out, split, dataset)
        _write_json(
            path,
            {
                "info": {
                    "description": layout.description,
                    "url": "",
                    "version": str(GENERATOR_VERSION),
                    "year": 2024,
                    "contributor": SYNTHETIC_CONTRIBUTOR,
                    "date_created": "generated",
                },
                "licenses": [{"id": 1, "name": "Synthetic images drawn by clamp.synthetic", "url": ""}],
                "images": images,
                "annotations": annotations,
                "categories": _categories(layout),
            },
        )
        digests[split] = _sha256(path)
        logger.info(
            "synthetic %s %s: %d images, %d instances -> %s", dataset, split, len(images), len(annotations), path
        )
    _write_json(manifest, {**params, "complete": True, "annotations_sha256": digests})
    return out


def ensure_synthetic(
    out_dir: str | Path,
    *,
    dataset: str = "ap10k",
    seed: int = 0,
    num_train: int = 1000,
    num_val: int = 200,
    num_test: int | None = None,
    image_size: int = 256,
    workers: int = 1,
) -> Path:
    """Reuse the dataset in ``out_dir`` if it was generated with these arguments, else generate it
    (``workers`` processes; the files do not depend on it).

    Reuse needs a complete ``synthetic.json`` with the same parameters and generator version,
    annotation files whose sha256 matches it, and every listed image present.
    """
    params = _params(dataset, seed, num_train, num_val, num_test, image_size)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Jobs of one multirun (a SLURM job array) start together: one generates, the others wait and reuse.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reason = _mismatch(out, params)
        if reason is None:
            logger.debug("reusing synthetic %s in %s", dataset, out)
            return out
        logger.info("generating synthetic %s in %s (%s)", dataset, out, reason)
        return generate_synthetic(
            out,
            dataset=dataset,
            seed=seed,
            num_train=num_train,
            num_val=num_val,
            num_test=params["num_test"],
            image_size=image_size,
            workers=workers,
        )


def synthetic_command(out_dir: str | Path, **generate: object) -> str:
    """The ``python -m clamp.synthetic`` command that writes the dataset ``generate`` describes into ``out_dir``
    (``generate``: the keyword arguments of :func:`ensure_synthetic`; ``out`` and unknown keys are ignored)."""
    flags = {"dataset": "--dataset", "seed": "--seed", "num_train": "--num-train", "num_val": "--num-val"}
    flags |= {"num_test": "--num-test", "image_size": "--image-size"}
    words = ["python -m clamp.synthetic", "--out", str(out_dir)]
    words += [f"{flag} {generate[key]}" for key, flag in flags.items() if generate.get(key) is not None]
    return " ".join(words)


def _mismatch(out: Path, params: dict) -> str | None:
    """Why the dataset in ``out`` cannot be reused, or None if it can."""
    manifest = out / MANIFEST_NAME
    if not manifest.is_file():
        return f"no {MANIFEST_NAME}"
    try:
        recorded = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return f"unreadable {MANIFEST_NAME}"
    if not recorded.get("complete"):
        return "previous generation did not finish"
    changed = [k for k, v in params.items() if recorded.get(k) != v]
    if changed:
        return "different " + ", ".join(changed)
    layout = _layout(params["dataset"])
    for split in SPLITS:
        path = annotation_path(out, split, params["dataset"])
        if not path.is_file() or _sha256(path) != recorded.get("annotations_sha256", {}).get(split):
            return f"{path.name} missing or modified"
        root = layout.files.image_folder(out, split)
        missing = [
            im["file_name"] for im in json.loads(path.read_text())["images"] if not (root / im["file_name"]).is_file()
        ]
        if missing:
            return f"{len(missing)} images missing, e.g. {missing[0]}"
    return None


def summarize_split(path: str | Path) -> str:
    """One line: images, instances, species, families and the fraction of labelled keypoints."""
    coco = json.loads(Path(path).read_text())
    anns = coco["annotations"]
    family = {c["id"]: c["supercategory"] for c in coco["categories"]}
    cats = {a["category_id"] for a in anns}
    k = len(coco["categories"][0]["keypoints"])
    labelled = sum(a["num_keypoints"] for a in anns) / max(1, len(anns) * k)
    return (
        f"{Path(path).name}: {len(coco['images'])} images, {len(anns)} instances, {len(cats)} species, "
        f"{len({family[c] for c in cats})} families, {labelled:.1%} keypoints labelled"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: generate (or reuse) a synthetic dataset and summarise it."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m clamp.synthetic", description="Generate a synthetic dataset in a real dataset's file layout."
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset root")
    parser.add_argument("--dataset", default="ap10k", choices=sorted(LAYOUTS), help="file layout (default ap10k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=None, help="default: same as --num-val")
    parser.add_argument("--image-size", type=int, default=256, help="square image side in pixels")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the images (same files)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching dataset exists")
    args = parser.parse_args(argv)
    # Progress on stdout like the other commands; stderr carries only the one-line error.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    make = generate_synthetic if args.force else ensure_synthetic
    try:
        out = make(
            args.out,
            dataset=args.dataset,
            seed=args.seed,
            num_train=args.num_train,
            num_val=args.num_val,
            num_test=args.num_test,
            image_size=args.image_size,
            workers=args.workers,
        )
    except (ClampError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    for split in SPLITS:
        print(summarize_split(annotation_path(out, split, args.dataset)))
