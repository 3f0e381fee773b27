"""Your own labelled project as a dataset ``data=custom`` trains on: ``python -m clamp.data.convert``.

::

    python -m clamp.data.convert --from dlc   ~/dlc/Reach-Ann-2024-01-01 --out data/reach
    python -m clamp.data.convert --from sleap labels.v001.slp             --out data/flies
    python -m clamp.data.convert --from coco  cvat/person_keypoints.json  --out data/mice
    python -m clamp.train data=custom data.root=data/reach

Sources:

* ``dlc``: a DeepLabCut project folder (or its ``config.yaml``). The keypoints are the config's
  ``bodyparts`` (``multianimalbodyparts`` in a multi-animal project; its ``uniquebodyparts`` are not
  parts of an animal and are left out, counted), the skeleton its ``skeleton``; the labels are every
  ``labeled-data/<video>/CollectedData_<scorer>.csv`` (rows: scorer, [individuals,] bodyparts, coords;
  the image path in one index column, ``labeled-data/<video>/img.png``, or three). One animal per
  row, one per individual in a multi-animal project.
* ``sleap``: a SLEAP labels file (``.slp``, read with sleap-io: ``pip install 'clamp[sleap]'``); user
  instances only (predictions are left out, counted), the frames decoded from the file's videos or
  embedded images; the skeleton's edges and symmetries are kept.
* ``coco``: a COCO-keypoint JSON (``--images``: the folder its ``file_name`` values are relative to,
  default the JSON's folder); all categories must share one keypoint list.

Writes under ``--out`` (which must be empty or new): the images under ``images/``, the labels as
``annotations/train.json`` and ``annotations/val.json`` (a seeded split by image, ``--val-fraction``),
and ``keypoints.yaml``: names, prompt words (from the names, :func:`clamp.keypoints.prompt_word`),
left/right flip pairs (the source's symmetries, else inferred from the names, to be confirmed in the
file), OKS sigmas (:data:`DEFAULT_SIGMA` each), the skeleton and no upper-body set. Every box is the
labelled keypoints' extent, padded by :data:`BOX_PADDING` of its longer side (at least
:data:`MIN_BOX_PADDING_PX`) on each side and clipped to the image, except COCO boxes, which are kept.
The written files are read back with :func:`clamp.data.coco.load_coco_keypoints` before the command
ends. A malformed source stops with one line naming the file, the row or record and the field.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clamp.errors import ClampError, MissingFileError
from clamp.files import image_size, read_json
from clamp.keypoints import KeypointSpec, infer_flip_pairs, prompt_word, write_keypoint_spec

log = logging.getLogger("clamp.data.convert")

SOURCES = ("dlc", "sleap", "coco")
#: The OKS sigma written for every keypoint (between COCO's eyes, 0.025, and hips, 0.107): edit it.
DEFAULT_SIGMA = 0.05
#: Boxes from keypoints: the extent padded by this share of its longer side on each side ...
BOX_PADDING = 0.1
#: ... and by at least this many pixels (one labelled point still gets a box).
MIN_BOX_PADDING_PX = 8.0
SPEC_FILE = "keypoints.yaml"
IMAGE_FOLDER = "images"


class ConvertError(ClampError):
    """A source project the converter cannot read; the message names the file, the row or record and the field."""


@dataclass
class Frame:
    """One labelled image: where its pixels come from, and each animal's (K, 2) points (NaN: unlabelled)."""

    file_name: str  # relative to the output's images/ folder
    source: Path | None = None  # an image file to copy ...
    pixels: np.ndarray | None = None  # ... or decoded (H, W, C) pixels to write as PNG
    animals: list[np.ndarray] = field(default_factory=list)
    boxes: list[list[float] | None] = field(default_factory=list)  # the source's boxes (COCO), else None
    categories: list[int] = field(default_factory=list)  # each animal's category id


@dataclass
class Project:
    """A source read into one form: keypoints, skeleton, symmetries when the source has them, frames."""

    name: str
    keypoint_names: list[str]
    skeleton: list[tuple[int, int]]
    frames: list[Frame]
    source: Path
    flip_pairs: list[tuple[int, int]] | None = None  # None: infer from the names
    categories: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, for the summary


# ---- DeepLabCut -------------------------------------------------------------------------------
def read_dlc(source: Path) -> Project:
    """A DeepLabCut project (module docstring) from its folder or ``config.yaml``."""
    import yaml

    config_path = source if source.is_file() else source / "config.yaml"
    if not config_path.is_file():
        raise MissingFileError(f"DeepLabCut project config not found: {config_path} (pass the project folder)")
    root = config_path.parent
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConvertError(f"{config_path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ConvertError(f"{config_path}: expected a DeepLabCut config (a mapping), got {type(config).__name__}")
    multi = bool(config.get("multianimalproject"))
    key = "multianimalbodyparts" if multi else "bodyparts"
    names = config.get(key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConvertError(f"{config_path}: field '{key}' must be a list of body-part names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConvertError(f"{config_path}: field '{key}' repeats a body part: {names}")
    skeleton = []
    for i, edge in enumerate(config.get("skeleton") or []):
        if not isinstance(edge, list) or len(edge) != 2 or not all(e in names for e in edge):
            raise ConvertError(f"{config_path}: field 'skeleton'[{i}] = {edge!r} must be two names of '{key}'")
        skeleton.append((names.index(edge[0]), names.index(edge[1])))
    csvs = sorted((root / "labeled-data").glob("*/CollectedData_*.csv"))
    if not csvs:
        h5 = sorted((root / "labeled-data").glob("*/CollectedData_*.h5"))
        hint = (
            f" ({h5[0]} is there: DeepLabCut writes the .csv beside it when labels are saved; "
            "save the labels again in its labelling GUI)"
            if h5
            else ""
        )
        raise MissingFileError(f"no labeled-data/<video>/CollectedData_<scorer>.csv under {root}{hint}")
    frames: list[Frame] = []
    unique = 0
    for path in csvs:
        file_frames, left_out = _read_dlc_csv(path, root, names)
        frames += file_frames
        unique += left_out
    project = Project(str(config.get("Task") or root.name), names, skeleton, frames, root)
    if unique:
        project.notes.append(f"{unique} labelled point(s) of uniquebodyparts (not parts of an animal) left out")
    return project


def _read_dlc_csv(path: Path, root: Path, names: list[str]) -> tuple[list[Frame], int]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header: dict[str, list[str]] = {}
    for row in rows[:4]:
        if row and row[0] in ("scorer", "individuals", "bodyparts", "coords"):
            header[row[0]] = row
    for needed in ("scorer", "bodyparts", "coords"):
        if needed not in header:
            raise ConvertError(
                f"{path}: header row '{needed}' missing; a DeepLabCut CollectedData file starts with the rows "
                "scorer, [individuals,] bodyparts, coords"
            )
    coords = header["coords"]
    first = next((j for j in range(1, len(coords)) if coords[j]), None)
    if first is None:
        raise ConvertError(f"{path}: the 'coords' row has no x/y columns")
    individuals = header.get("individuals")
    columns: dict[tuple[str, str], dict[str, int]] = {}  # (individual, body part) -> {"x": col, "y": col}
    unique_x = []  # x columns of the uniquebodyparts (individual "single" of a multi-animal project)
    for j in range(first, len(coords)):
        part = header["bodyparts"][j] if j < len(header["bodyparts"]) else ""
        axis = coords[j]
        who = individuals[j] if individuals is not None and j < len(individuals) else ""
        if axis not in ("x", "y"):
            continue  # likelihood (machine labels merged in)
        if part not in names:
            if individuals is not None and who == "single":
                unique_x += [j] if axis == "x" else []
                continue
            raise ConvertError(f"{path}: column {j + 1}: body part '{part}' is not in the config's body parts {names}")
        columns.setdefault((who, part), {})[axis] = j
    animals = list(dict.fromkeys(who for who, _ in columns))
    frames, left_out = [], 0
    start = len(header)
    for r, row in enumerate(rows[start:], start=start + 1):
        if not any(cell.strip() for cell in row):
            continue
        relative = "/".join(cell.strip().replace("\\", "/") for cell in row[:first] if cell.strip())
        if not relative:
            raise ConvertError(f"{path}: row {r}: no image path in the first {first} column(s)")
        image = root / relative
        if not image.is_file():
            raise MissingFileError(f"{path}: row {r}: image '{relative}' not found (looked for {image})")
        frame = Frame(_under_labeled_data(relative), source=image)
        for who in animals:
            points = np.full((len(names), 2), np.nan)
            for (owner, part), cols in columns.items():
                if owner == who:
                    for a, axis in enumerate(("x", "y")):
                        points[names.index(part), a] = _number(row, cols.get(axis), path, r, f"{part} {axis}")
            frame.animals.append(points)
            frame.boxes.append(None)
            frame.categories.append(1)
        left_out += sum(1 for j in unique_x if j < len(row) and row[j].strip())
        frames.append(frame)
    return frames, left_out


def _under_labeled_data(relative: str) -> str:
    parts = relative.split("/")
    return "/".join(parts[1:] if parts[0] == "labeled-data" and len(parts) > 1 else parts)


def _number(row: list[str], column: int | None, path: Path, r: int, what: str) -> float:
    if column is None or column >= len(row) or not row[column].strip():
        return math.nan
    try:
        value = float(row[column])
    except ValueError:
        raise ConvertError(f"{path}: row {r}, column {column + 1} ({what}): {row[column]!r} is not a number") from None
    return value


# ---- SLEAP ------------------------------------------------------------------------------------
def read_sleap(source: Path) -> Project:
    """A SLEAP labels file through sleap-io (module docstring)."""
    try:
        import sleap_io as sio
    except ImportError:
        raise ConvertError(
            "--from sleap reads .slp files with sleap-io: pip install 'clamp[sleap]' (or pip install sleap-io)"
        ) from None
    if not source.is_file():
        raise MissingFileError(f"SLEAP labels file not found: {source}")
    try:
        labels = sio.load_slp(str(source))
    except Exception as err:  # sleap-io raises h5py/KeyError/ValueError for files that are not labels
        raise ConvertError(f"{source}: not a SLEAP labels file sleap-io reads ({type(err).__name__}: {err})") from None
    if len(labels.skeletons) != 1:
        raise ConvertError(f"{source}: field 'skeletons' has {len(labels.skeletons)} skeletons; convert one at a time")
    skeleton = labels.skeletons[0]
    names = list(skeleton.node_names)
    frames, predicted = [], 0
    stems: dict[Any, str] = {}
    for lf in labels.labeled_frames:
        user = [inst for inst in lf.instances if not isinstance(inst, sio.PredictedInstance)]
        predicted += len(lf.instances) - len(user)
        if not user:
            continue
        video = stems.setdefault(id(lf.video), _video_stem(lf.video, len(stems)))
        try:
            pixels = np.asarray(lf.image)
        except Exception as err:  # the video's backend could not decode it
            raise ConvertError(
                f"{source}: frame {lf.frame_idx} of video '{_video_name(lf.video)}' cannot be read ({err}); "
                "is the video where the labels file says?"
            ) from None
        frame = Frame(f"{video}/{lf.frame_idx:06d}.png", pixels=pixels)
        for inst in user:
            frame.animals.append(np.asarray(inst.numpy(), dtype=np.float64)[:, :2])
            frame.boxes.append(None)
            frame.categories.append(1)
        frames.append(frame)
    symmetries = [tuple(sorted((int(a), int(b)))) for a, b in skeleton.symmetry_inds]
    project = Project(
        source.name.split(".")[0],
        names,
        [(int(a), int(b)) for a, b in skeleton.edge_inds],
        frames,
        source,
        flip_pairs=sorted(set(symmetries)) or None,  # type: ignore[arg-type]
    )
    if predicted:
        project.notes.append(f"{predicted} predicted instance(s) left out (user-labelled ones only)")
    return project


def _video_name(video: Any) -> str:
    filename = video.filename
    return str(filename[0] if isinstance(filename, list) and filename else filename)


def _video_stem(video: Any, index: int) -> str:
    name = Path(_video_name(video))
    # An image sequence is named after its folder; a video file after itself; same names get a number.
    stem = name.parent.name if isinstance(video.filename, list) else name.stem
    return f"{stem or 'video'}_{index}" if index else (stem or "video")


# ---- COCO -------------------------------------------------------------------------------------
def read_coco(source: Path, images: Path | None = None) -> Project:
    """A COCO-keypoint file (module docstring); boxes are kept, a missing one made from the keypoints."""
    raw = read_json(source, "COCO keypoint file")
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ConvertError(f"{source}: a COCO-keypoint file needs 'images', 'annotations' and 'categories' lists")
    image_root = images or source.parent
    names: list[str] | None = None
    skeleton: list[tuple[int, int]] = []
    for i, cat in enumerate(raw["categories"]):
        keypoints = cat.get("keypoints") if isinstance(cat, dict) else None
        if not isinstance(keypoints, list) or not keypoints or not all(isinstance(k, str) for k in keypoints):
            raise ConvertError(f"{source}: categories[{i}]: field 'keypoints' must be a list of keypoint names")
        if names is None:
            names = keypoints
            for j, edge in enumerate(cat.get("skeleton") or []):
                if (
                    not isinstance(edge, list)
                    or len(edge) != 2
                    or not all(isinstance(e, int) and 1 <= e <= len(names) for e in edge)
                ):
                    raise ConvertError(
                        f"{source}: categories[{i}]: field 'skeleton'[{j}] = {edge!r} must be two keypoint numbers "
                        f"1..{len(names)} (COCO skeletons count from 1)"
                    )
                skeleton.append((edge[0] - 1, edge[1] - 1))
        elif keypoints != names:
            raise ConvertError(
                f"{source}: categories[{i}]: field 'keypoints' differs from categories[0]'s "
                "(one keypoint list per dataset)"
            )
    if names is None:
        raise ConvertError(f"{source}: field 'categories' is empty")
    k = len(names)
    by_id: dict[Any, Frame] = {}
    for i, image in enumerate(raw["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise ConvertError(f"{source}: images[{i}] needs 'id' and a 'file_name' string")
        path = image_root / image["file_name"]
        if not path.is_file():
            raise MissingFileError(f"{source}: images[{i}]: image '{image['file_name']}' not found under {image_root}")
        by_id[image["id"]] = Frame(image["file_name"], source=path)
    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in by_id:
            raise ConvertError(f"{source}: annotations[{i}]: field 'image_id' names no image of 'images'")
        if ann.get("iscrowd"):
            continue
        values = ann.get("keypoints")
        if (
            not isinstance(values, list)
            or len(values) != 3 * k
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        ):
            raise ConvertError(f"{source}: annotations[{i}]: field 'keypoints' must be {3 * k} numbers (x, y, v) x {k}")
        triples = np.asarray(values, dtype=np.float64).reshape(k, 3)
        points = np.where(triples[:, 2:] > 0, triples[:, :2], np.nan)
        bbox = ann.get("bbox")
        box = [float(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 and min(bbox[2:]) > 0 else None
        frame = by_id[ann["image_id"]]
        frame.animals.append(points)
        frame.boxes.append(box)
        frame.categories.append(int(ann.get("category_id", raw["categories"][0].get("id", 1))))
    categories = [
        {
            "id": c.get("id", i + 1),
            "name": str(c.get("name", f"category {i + 1}")),
            "supercategory": c.get("supercategory"),
        }
        for i, c in enumerate(raw["categories"])
    ]
    name = str(raw["categories"][0].get("name") or source.stem)
    return Project(name, names, skeleton, list(by_id.values()), source, categories=categories)


# ---- the output -------------------------------------------------------------------------------
def keypoint_box(points: np.ndarray, width: int, height: int) -> list[float] | None:
    """[x, y, w, h] of the labelled points' extent, padded (module docstring) and clipped; None if none."""
    labelled = points[np.isfinite(points).all(axis=1)]
    if not len(labelled):
        return None
    low, high = labelled.min(axis=0), labelled.max(axis=0)
    pad = max(BOX_PADDING * float((high - low).max()), MIN_BOX_PADDING_PX)
    x1, y1 = max(0.0, low[0] - pad), max(0.0, low[1] - pad)
    x2, y2 = min(float(width), high[0] + pad), min(float(height), high[1] + pad)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def build_spec(project: Project) -> tuple[KeypointSpec, list[str]]:
    """The keypoint spec of a project and the warnings about it (unpaired sides, long prompt words)."""
    from clamp.models.text import CONTEXT_LENGTH, NUM_CONTEXT, tokenize_prompt_words

    names = project.keypoint_names
    inferred, unpaired = infer_flip_pairs(names)
    pairs = project.flip_pairs if project.flip_pairs is not None else list(inferred)
    warnings = [
        f"'{name}' names a side but no keypoint of the other side matches it: not flipped "
        f"(add its pair to flip_pairs in {SPEC_FILE} if it has one)"
        for name in unpaired
        if project.flip_pairs is None
    ]
    words = [prompt_word(n) for n in names]
    for word in words:
        try:
            tokenize_prompt_words([word], CONTEXT_LENGTH - NUM_CONTEXT)
        except ValueError as err:
            warnings.append(f"{err} (edit prompt_words in {SPEC_FILE})")
    spec = KeypointSpec(
        name=project.name,
        keypoint_names=tuple(names),
        prompt_words=tuple(words),
        flip_pairs=tuple(tuple(p) for p in pairs),  # type: ignore[misc]
        sigmas=(DEFAULT_SIGMA,) * len(names),
        skeleton=tuple(project.skeleton),
        upper_body_ids=(),
    )
    return spec, warnings


@dataclass
class Converted:
    """What :func:`convert` wrote and what it has to say."""

    out: Path
    spec: KeypointSpec
    counts: dict[str, int]
    warnings: list[str]
    notes: list[str]


def convert(
    kind: str,
    source: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Converted:
    """Convert a DLC/SLEAP/COCO source into a ``data=custom`` dataset under ``out`` (module docstring)."""
    from clamp.data.coco import load_coco_keypoints

    source, out = Path(source).expanduser(), Path(out).expanduser()
    if kind not in SOURCES:
        raise ConvertError(f"--from {kind}: choose one of {list(SOURCES)}")
    if not 0 < val_fraction < 1:
        raise ConvertError(f"--val-fraction {val_fraction} must be between 0 and 1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConvertError(f"--out {out} exists and is not an empty folder; nothing is replaced: pick a new folder")
    if kind == "dlc":
        project = read_dlc(source)
    elif kind == "sleap":
        project = read_sleap(source)
    else:
        project = read_coco(source, Path(images) if images else None)
    spec, warnings = build_spec(project)
    frames = [f for f in project.frames if any(np.isfinite(a).all(axis=1).any() for a in f.animals)]
    notes = list(project.notes)
    if len(frames) < len(project.frames):
        notes.append(f"{len(project.frames) - len(frames)} image(s) without a labelled point left out")
    if len(frames) < 2:
        raise ConvertError(f"{source}: {len(frames)} labelled image(s); a training and a validation set need 2 or more")
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    num_val = min(len(frames) - 1, max(1, round(val_fraction * len(frames))))
    val_ids = set(order[:num_val])
    out.mkdir(parents=True, exist_ok=True)
    categories = project.categories or [{"id": 1, "name": project.name, "supercategory": project.name}]
    for category in categories:
        category.update(keypoints=list(spec.keypoint_names), skeleton=[[a + 1, b + 1] for a, b in spec.skeleton])
    sets: dict[str, dict[str, Any]] = {
        s: {"images": [], "annotations": [], "categories": categories} for s in ("train", "val")
    }
    ann_id = 0
    for image_id, frame in enumerate(frames, start=1):
        file_name = f"{IMAGE_FOLDER}/{frame.file_name}"
        target = out / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        if frame.pixels is not None:
            _write_png(target, frame.pixels)
        else:
            shutil.copyfile(frame.source, target)  # type: ignore[arg-type]
        width, height = image_size(target)
        data = sets["val" if image_id - 1 in val_ids else "train"]
        data["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for points, box, category in zip(frame.animals, frame.boxes, frame.categories):
            labelled = np.isfinite(points).all(axis=1)
            if not labelled.any():
                continue
            box = box or keypoint_box(points, width, height)
            keypoints = np.zeros((len(points), 3))
            keypoints[labelled, :2] = points[labelled]
            keypoints[labelled, 2] = 2
            ann_id += 1
            data["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": box,
                    "area": round(box[2] * box[3], 2),  # type: ignore[index]
                    "iscrowd": 0,
                    "num_keypoints": int(labelled.sum()),
                    "keypoints": [round(float(v), 2) for v in keypoints.ravel()],
                }
            )
    (out / "annotations").mkdir(exist_ok=True)
    for split, data in sets.items():
        (out / "annotations" / f"{split}.json").write_text(json.dumps(data) + "\n")
    pair_names = ", ".join(f"{spec.keypoint_names[a]}/{spec.keypoint_names[b]}" for a, b in spec.flip_pairs)
    origin = "the source's symmetries" if project.flip_pairs is not None else "the names"
    header = [
        f"Keypoint spec written by `python -m clamp.data.convert --from {kind} {source}`.",
        f"Flip pairs from {origin}: {pair_names or 'none'}. Check them, the prompt words (what CLIP reads)",
        f"and the OKS sigmas ({DEFAULT_SIGMA} each: how precisely a keypoint can be labelled) before training.",
        "Pairs, skeleton and upper_body_ids may name keypoints or give 0-based indices.",
    ]
    write_keypoint_spec(spec, out / SPEC_FILE, header)
    counts = {}
    for split in sets:  # read back with the reader data=custom uses
        loaded = load_coco_keypoints(out / "annotations" / f"{split}.json", str(out / SPEC_FILE), image_root=out)
        counts[f"{split}_images"] = len(loaded.images)
        counts[f"{split}_instances"] = len(loaded.instances)
    return Converted(out, spec, counts, warnings, notes)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)


def summary(result: Converted) -> list[str]:
    """The console report: counts, flip pairs, warnings, notes and the training command."""
    spec, c = result.spec, result.counts
    names = spec.keypoint_names
    pairs = ", ".join(f"{names[a]}/{names[b]}" for a, b in spec.flip_pairs) or "none"
    lines = [
        f"{result.out}: {c['train_images']} training image(s) ({c['train_instances']} animals), "
        f"{c['val_images']} validation image(s) ({c['val_instances']} animals), {spec.num_keypoints} keypoints",
        f"flip pairs: {pairs} (check them in {result.out / SPEC_FILE})",
    ]
    lines += [f"warning: {w}" for w in result.warnings]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"train: python -m clamp.train data=custom data.root={result.out}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Command line (module docstring)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m clamp.data.convert",
        description="Convert a DeepLabCut project, a SLEAP file or a COCO-keypoint file for data=custom.",
    )
    parser.add_argument("--from", dest="kind", required=True, choices=SOURCES, help="the source's format")
    parser.add_argument("source", type=Path, help="DLC project folder or config.yaml, .slp file, or COCO JSON")
    parser.add_argument("--out", required=True, type=Path, help="new (or empty) dataset folder")
    parser.add_argument("--images", type=Path, default=None, help="COCO only: the images' folder (default: the JSON's)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of images for validation (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    args = parser.parse_args(argv)

    try:
        result = convert(
            args.kind, args.source, args.out, images=args.images, val_fraction=args.val_fraction, seed=args.seed
        )
    except ClampError as error:  # one line, exit 2, as the other entry points (clamp.cli)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(summary(result)))


if __name__ == "__main__":
    main()
