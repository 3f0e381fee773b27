"""Read COCO-keypoint files (AP-10K, Animal-Pose mmpose conversion, COCO person), validating as we go.

Every record is checked once, in a single pass (numpy for the keypoint arrays), so a real AP-10K
train file (~7k images, ~9.5k instances) loads in a fraction of a second. Anything malformed raises
:class:`AnnotationError` naming the file, the record id, the field, the offending value and what
to do about it.

Species = ``category_id`` (name in ``categories[].name``); family = the category's
``supercategory`` (AP-10K stores the family there; a category without one is its own family).

Rules, in the order they are applied:

* top-level ``images``, ``annotations`` and ``categories`` lists must exist; required fields are
  ``images``: id, file_name, width, height; ``annotations``: id, image_id, category_id, bbox,
  keypoints; ``categories``: id, name. Ids must be unique per list, and every annotation must
  refer to a known image and category.
* a category's ``keypoints`` name list, when present, must have K names (K from the spec):
  otherwise the file belongs to another dataset than the spec passed.
* ``keypoints`` holds 3*K finite numbers with visibility in {0, 1, 2}; ``num_keypoints``, when
  present, must equal the number of points with v > 0 (it is computed when absent).
* ``bbox`` must have w > 0 and h > 0 and overlap the image. It is then clipped the way mmpose 0.x
  does (``TopDownCocoDataset``), for *every* box::

      x1 = max(0, x); y1 = max(0, y)
      x2 = min(W - 1, x1 + max(0, w - 1)); y2 = min(H - 1, y1 + max(0, h - 1))
      bbox = (x1, y1, x2 - x1, y2 - y1)

  In the pixel-centre convention a box of w pixels starting at x spans coordinates x..x+w-1, so a
  box inside the image comes out 1 px narrower and shorter than in the file, exactly as mmpose
  feeds it to its centre/scale computation. Like mmpose, a box starting left of (above) the image
  is moved to x = 0 (y = 0) with its width kept, then cut at the far border. Boxes that reach past
  the image border are counted and the count is logged at INFO. A box that does not overlap the
  image, or keeps less than 2 pixels of width or height after clipping, is an error.
  ``area`` (the OKS normaliser) is kept as in the file, or w*h of the file's box when absent.

Documented skips (mmpose drops these for training and evaluation; counted, logged once at INFO and
kept in :attr:`CocoKeypoints.load_stats`): ``iscrowd == 1`` instances, and instances with no
labelled keypoint (all v == 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from clamp.data.layouts import LAYOUTS, layout_of_annotation
from clamp.errors import ClampError, MissingFileError
from clamp.files import MAX_JSON_BYTES
from clamp.keypoints import KEYPOINT_SPECS, KeypointSpec, get_keypoint_spec

log = logging.getLogger(__name__)

_REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox", "keypoints"),
    "categories": ("id", "name"),
}


class AnnotationError(ClampError, ValueError):
    """A malformed annotation file; the message names file, record, field, value and the fix."""


def clip_boxes_to_image(boxes_xywh: np.ndarray, width: np.ndarray | float, height: np.ndarray | float) -> np.ndarray:
    """Boxes (..., 4) ``[x, y, w, h]`` clipped the mmpose 0.x way (module docstring), as ``[x1, y1, x2 - x1, y2 - y1]``.

    A result with a width or height <= 0 keeps less than 2 pixels inside the image (mmpose drops it).
    The one rule of the dataset, the evaluation and the predictor.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    x, y, w, h = np.moveaxis(boxes, -1, 0)
    x1, y1 = np.maximum(0, x), np.maximum(0, y)
    x2 = np.minimum(np.asarray(width, np.float64) - 1, x1 + np.maximum(0, w - 1))
    y2 = np.minimum(np.asarray(height, np.float64) - 1, y1 + np.maximum(0, h - 1))
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


@dataclass(frozen=True)
class ImageRecord:
    """One ``images`` entry."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Instance:
    """One usable annotated instance; ``bbox`` is xywh clipped mmpose-style (see module docstring)."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float
    iscrowd: int
    num_keypoints: int
    keypoints: np.ndarray  # (K, 3) float32: x, y, v


@dataclass(frozen=True)
class Category:
    """One ``categories`` entry: species ``name`` and its ``family`` (the ``supercategory``)."""

    id: int
    name: str
    family: str


@dataclass
class CocoKeypoints:
    """A validated COCO-keypoint file: its images, categories and usable instances.

    ``images`` holds every image of the file as loaded, and only the kept instances' images after
    :meth:`subset`. ``raw`` is the parsed JSON as read; ``load_stats`` counts the documented skips and
    clipped boxes (keys ``iscrowd_skipped``, ``no_keypoints_skipped``, ``bbox_clipped``).
    """

    path: Path
    sha256: str
    spec: KeypointSpec
    image_root: Path
    images: dict[int, ImageRecord]
    categories: dict[int, Category]
    instances: list[Instance]
    raw: dict
    load_stats: dict[str, int] = field(default_factory=dict)

    def image_path(self, image_id: int) -> Path:
        """Absolute-or-relative path of an image: ``image_root / file_name``."""
        try:
            return self.image_root / self.images[image_id].file_name
        except KeyError:
            raise KeyError(f"{self.path.name}: no image with id {image_id} in this set") from None

    def species_name(self, category_id: int) -> str:
        """Species (category) name of a category id."""
        return self._category(category_id).name

    def family(self, category_id: int) -> str:
        """Family (the category's ``supercategory``) of a category id."""
        return self._category(category_id).family

    def _category(self, category_id: int) -> Category:
        try:
            return self.categories[category_id]
        except KeyError:
            raise KeyError(
                f"{self.path.name}: unknown category id {category_id}; known ids: {sorted(self.categories)}"
            ) from None

    def subset(self, instance_ids: Iterable[int]) -> CocoKeypoints:
        """The same file restricted to ``instance_ids`` (file order kept) and the images they lie in."""
        wanted = set(instance_ids)
        kept = [inst for inst in self.instances if inst.id in wanted]
        if len(kept) != len(wanted):
            unknown = sorted(wanted - {inst.id for inst in kept})
            raise KeyError(
                f"{self.path.name}: {len(unknown)} requested instance id(s) are not usable instances of this "
                f"file, e.g. {unknown[:5]}; was the id list built from another annotation file?"
            )
        image_ids = {inst.image_id for inst in kept}
        images = {i: rec for i, rec in self.images.items() if i in image_ids}
        return replace(self, images=images, instances=kept)

    def ground_truth(
        self, image_ids: Iterable[int] | None = None, category_ids: Iterable[int] | None = None
    ) -> dict[str, Any]:
        """The file's own COCO ground truth for the evaluated images, as the official evaluator sees it.

        The official code scores against the annotation file itself (``COCO(ann_file)``), where
        pycocotools keeps crowd and keypoint-less annotations as *ignored* ground truth: a prediction
        that matches one is neither a true nor a false positive. So this returns the file's image
        records of ``image_ids`` (default: all) and *every* annotation on them, ignored ones included,
        unchanged; only fields pycocotools needs and the file leaves out are filled in (``iscrowd`` 0,
        ``area`` = box w*h, ``num_keypoints`` = labelled points, the categories' keypoint names).
        ``category_ids`` restricts annotations and categories to those species (zero-shot family
        splits: the test family's, ignored annotations of the family kept, so that no other family's
        species enters the per-species mean with AP 0).
        """
        wanted_images = set(self.images) if image_ids is None else set(image_ids)
        wanted_categories = None if category_ids is None else set(category_ids)
        images = [dict(rec) for rec in self.raw["images"] if int(rec["id"]) in wanted_images]
        annotations = []
        for rec in self.raw["annotations"]:
            if int(rec["image_id"]) not in wanted_images:
                continue
            if wanted_categories is not None and int(rec["category_id"]) not in wanted_categories:
                continue
            ann = dict(rec)
            ann.setdefault("iscrowd", 0)
            ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
            ann.setdefault("num_keypoints", int(sum(v > 0 for v in ann["keypoints"][2::3])))
            annotations.append(ann)
        categories = []
        for cat in self.raw["categories"]:
            if wanted_categories is not None and int(cat["id"]) not in wanted_categories:
                continue
            cat = dict(cat)
            cat.setdefault("keypoints", list(self.spec.keypoint_names))
            cat.setdefault("supercategory", self.categories[int(cat["id"])].family)
            categories.append(cat)
        return {"images": images, "annotations": annotations, "categories": categories}


def default_image_root(path: Path, spec: KeypointSpec) -> Path:
    """Image folder implied by the annotation path: the dataset layout's (:mod:`clamp.data.layouts`) when
    the file sits at its layout's place (``<root>/annotations/...``), else the JSON's folder."""
    if path.parent.name != "annotations":
        return path.parent
    root = path.parent.parent
    found = layout_of_annotation(path)
    if found is not None:
        return LAYOUTS[found[0]].image_folder(root, found[1])
    layout = LAYOUTS.get(spec.name)
    if layout is not None and not layout.names_relative_to_root and "{split}" not in layout.images:
        return root / layout.images
    return root


def load_coco_keypoints(
    path: str | Path,
    spec: KeypointSpec | str,
    image_root: str | Path | None = None,
    max_bytes: int = MAX_JSON_BYTES,
) -> CocoKeypoints:
    """Load and validate a COCO-keypoint file (rules and skips: see the module docstring).

    Raises :class:`AnnotationError` for a missing file (with a hint where the dataset goes), a file
    larger than ``max_bytes``, invalid JSON or any malformed record.
    """
    path = Path(path)
    spec = get_keypoint_spec(spec)
    if not path.is_file():
        hint = LAYOUTS[spec.name].how_to_get if spec.name in LAYOUTS else "check the path passed as the annotation file"
        raise MissingFileError(f"annotation file not found: {path}. {hint}")
    if path.stat().st_size > max_bytes:
        raise AnnotationError(
            f"annotation file {path} is {path.stat().st_size / 2**20:.0f} MiB, more than the "
            f"{max_bytes / 2**20:.0f} MiB allowed; pass a larger max_bytes if it is trusted"
        )
    data = path.read_bytes()
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: not valid JSON ({err}); re-download or re-convert the file") from None
    reader = _Reader(path, spec)
    images, categories, instances, stats = reader.read(raw)
    root = Path(image_root) if image_root is not None else default_image_root(path, spec)
    return CocoKeypoints(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        spec=spec,
        image_root=root,
        images=images,
        categories=categories,
        instances=instances,
        raw=raw,
        load_stats=stats,
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reader:
    """One validation pass over a parsed file; holds the file name for error messages."""

    def __init__(self, path: Path, spec: KeypointSpec) -> None:
        self.path = path
        self.spec = spec

    def error(self, section: str, record_id: Any, field_name: str, value: Any, problem: str, fix: str) -> None:
        raise AnnotationError(
            f"{self.path.name}: {section} record id={record_id}: field '{field_name}' = {_short(value)} "
            f"{problem}; {fix}"
        )

    def read(self, raw: Any) -> tuple[dict[int, ImageRecord], dict[int, Category], list[Instance], dict[str, int]]:
        if not isinstance(raw, dict):
            raise AnnotationError(
                f"{self.path.name}: top level is {type(raw).__name__}, expected a JSON object with "
                "'images', 'annotations' and 'categories'; is this a COCO-keypoint file?"
            )
        for key in _REQUIRED:
            if not isinstance(raw.get(key), list):
                problem = "is missing" if key not in raw else f"is a {type(raw[key]).__name__}, not a list"
                raise AnnotationError(
                    f"{self.path.name}: top-level key '{key}' {problem}; a COCO-keypoint file needs "
                    "'images', 'annotations' and 'categories' lists (the official Animal-Pose keypoints.json "
                    "must first be converted with mmpose's parse_animalpose_dataset.py)"
                )
        categories = self.read_categories(raw["categories"])
        images = self.read_images(raw["images"])
        instances, stats = self.read_annotations(raw["annotations"], images, categories)
        return images, categories, instances, stats

    def check_fields(self, section: str, index: int, record: Any) -> None:
        if not isinstance(record, dict):
            raise AnnotationError(
                f"{self.path.name}: {section}[{index}] is {_short(record)}, not an object; fix the file"
            )
        for name in _REQUIRED[section]:
            if name not in record:
                self.error(
                    section,
                    record.get("id", f"? (index {index})"),
                    name,
                    None,
                    "is missing",
                    f"every {section} record needs {', '.join(_REQUIRED[section])}",
                )

    def integer(self, section: str, record_id: Any, field_name: str, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value != int(value)
        ):
            self.error(section, record_id, field_name, value, "is not an integer", "ids and sizes must be integers")
        return int(value)

    def number(self, section: str, record_id: Any, field_name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.error(section, record_id, field_name, value, "is not a finite number", "fix the value")
        return float(value)

    def unique(self, section: str, ids: list[int]) -> None:
        if len(set(ids)) != len(ids):
            dup = next(i for i, n in Counter(ids).items() if n > 1)
            self.error(section, dup, "id", dup, "is used by more than one record", f"{section} ids must be unique")

    def read_categories(self, records: list) -> dict[int, Category]:
        k = self.spec.num_keypoints
        categories: dict[int, Category] = {}
        for index, rec in enumerate(records):
            self.check_fields("categories", index, rec)
            cid = self.integer("categories", rec["id"], "id", rec["id"])
            name, family = rec["name"], rec.get("supercategory", rec["name"])
            for field_name, value in (("name", name), ("supercategory", family)):
                if not isinstance(value, str):
                    self.error("categories", cid, field_name, value, "is not a string", "names must be strings")
            names = rec.get("keypoints")
            if names is not None and (not isinstance(names, list) or len(names) != k):
                count = len(names) if isinstance(names, list) else "no list of"
                matching = [
                    s for s, sp in KEYPOINT_SPECS.items() if isinstance(names, list) and len(names) == sp.num_keypoints
                ]
                self.error(
                    "categories",
                    cid,
                    "keypoints",
                    names,
                    f"has {count} names but spec '{self.spec.name}' has {k}: this file does not "
                    "match the keypoint spec",
                    f"pass the spec of this dataset (specs with that many keypoints: {matching or 'none'})",
                )
            if names is not None and tuple(names) != self.spec.keypoint_names:
                log.warning(
                    "%s: category %d keypoint names %s differ from spec '%s' names %s; channel order follows the spec",
                    self.path.name,
                    cid,
                    names,
                    self.spec.name,
                    self.spec.keypoint_names,
                )
            categories[cid] = Category(cid, name, family)
        self.unique("categories", [int(r["id"]) for r in records])
        return categories

    def read_images(self, records: list) -> dict[int, ImageRecord]:
        images: dict[int, ImageRecord] = {}
        for index, rec in enumerate(records):
            self.check_fields("images", index, rec)
            iid = self.integer("images", rec["id"], "id", rec["id"])
            if not isinstance(rec["file_name"], str) or not rec["file_name"]:
                self.error(
                    "images",
                    iid,
                    "file_name",
                    rec["file_name"],
                    "is not a non-empty string",
                    "give the image's path relative to the image root",
                )
            size = {}
            for name in ("width", "height"):
                size[name] = self.integer("images", iid, name, rec[name])
                if size[name] <= 0:
                    self.error("images", iid, name, rec[name], "is not positive", "give the image size in pixels")
            images[iid] = ImageRecord(iid, rec["file_name"], size["width"], size["height"])
        self.unique("images", [int(r["id"]) for r in records])
        return images

    def read_annotations(
        self, records: list, images: dict[int, ImageRecord], categories: dict[int, Category]
    ) -> tuple[list[Instance], dict[str, int]]:
        k = self.spec.num_keypoints
        ids, image_ids, cat_ids, boxes, areas, crowd = [], [], [], [], [], []
        for index, rec in enumerate(records):
            self.check_fields("annotations", index, rec)
            aid = self.integer("annotations", rec["id"], "id", rec["id"])
            iid = self.integer("annotations", aid, "image_id", rec["image_id"])
            if iid not in images:
                self.error(
                    "annotations",
                    aid,
                    "image_id",
                    iid,
                    "refers to no image in 'images'",
                    "add the image record or drop the annotation",
                )
            cid = self.integer("annotations", aid, "category_id", rec["category_id"])
            if cid not in categories:
                self.error(
                    "annotations",
                    aid,
                    "category_id",
                    cid,
                    f"refers to no category (known: {sorted(categories)[:10]}...)",
                    "add the category or fix the id",
                )
            kpts = rec["keypoints"]
            if not isinstance(kpts, list) or len(kpts) != 3 * k:
                length = len(kpts) if isinstance(kpts, list) else "not a list"
                self.error(
                    "annotations",
                    aid,
                    "keypoints",
                    kpts,
                    f"has length {length}, expected 3*K = {3 * k} for spec '{self.spec.name}'",
                    "check that the spec matches this dataset",
                )
            bbox = rec["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                self.error("annotations", aid, "bbox", bbox, "is not a list [x, y, w, h]", "fix the box")
            boxes.append([self.number("annotations", aid, "bbox", v) for v in bbox])
            areas.append(self.number("annotations", aid, "area", rec["area"]) if "area" in rec else math.nan)
            iscrowd = self.integer("annotations", aid, "iscrowd", rec.get("iscrowd", 0))
            if iscrowd not in (0, 1):
                self.error("annotations", aid, "iscrowd", iscrowd, "is not 0 or 1", "fix the flag")
            ids.append(aid)
            image_ids.append(iid)
            cat_ids.append(cid)
            crowd.append(iscrowd)
        self.unique("annotations", ids)
        if not records:
            return [], {"iscrowd_skipped": 0, "no_keypoints_skipped": 0, "bbox_clipped": 0}

        kp = self.keypoint_array(records, ids)
        num_labelled = (kp[:, :, 2] > 0).sum(axis=1)
        for index, rec in enumerate(records):
            if "num_keypoints" in rec:
                given = self.integer("annotations", ids[index], "num_keypoints", rec["num_keypoints"])
                if given != num_labelled[index]:
                    self.error(
                        "annotations",
                        ids[index],
                        "num_keypoints",
                        given,
                        f"disagrees with the keypoints array, which has {num_labelled[index]} points with v>0",
                        "fix or remove num_keypoints (it is computed when absent)",
                    )

        crowd_arr = np.asarray(crowd)
        keep = np.flatnonzero((crowd_arr == 0) & (num_labelled > 0))
        # Boxes and areas are only checked where they are used: COCO's keypoint-less and crowd records
        # carry degenerate boxes that mmpose never looks at either.
        file_box = np.asarray(boxes, dtype=np.float64)[keep]
        kept_ids = [ids[i] for i in keep]
        kept_images = [image_ids[i] for i in keep]
        clipped, n_clipped = self.clip_boxes(file_box, kept_images, images, kept_ids)
        area = np.asarray(areas, dtype=np.float64)[keep]
        area = np.where(np.isnan(area), file_box[:, 2] * file_box[:, 3], area)
        bad_area = np.flatnonzero(area <= 0)
        if bad_area.size:
            i = bad_area[0]
            self.error(
                "annotations",
                kept_ids[i],
                "area",
                area[i],
                "is not positive",
                "give the instance area (AP-10K uses bbox w*h) or remove it",
            )

        stats = {
            "iscrowd_skipped": int((crowd_arr == 1).sum()),
            "no_keypoints_skipped": int(((crowd_arr == 0) & (num_labelled == 0)).sum()),
            "bbox_clipped": n_clipped,
        }
        if stats["iscrowd_skipped"]:
            log.info(
                "%s: skipped %d iscrowd=1 instance(s) (mmpose does not use them)",
                self.path.name,
                stats["iscrowd_skipped"],
            )
        if stats["no_keypoints_skipped"]:
            log.info(
                "%s: skipped %d instance(s) with no labelled keypoint (mmpose drops them)",
                self.path.name,
                stats["no_keypoints_skipped"],
            )
        if n_clipped:
            log.info("%s: clipped %d bounding box(es) reaching past the image border", self.path.name, n_clipped)

        boxes_out, areas_out, counts_out = clipped.tolist(), area.tolist(), num_labelled.tolist()
        return [
            Instance(
                id=kept_ids[j],
                image_id=kept_images[j],
                category_id=cat_ids[i],
                bbox=tuple(boxes_out[j]),
                area=areas_out[j],
                iscrowd=0,
                num_keypoints=counts_out[i],
                keypoints=kp[i],
            )
            for j, i in enumerate(keep)
        ], stats

    def keypoint_array(self, records: list, ids: list[int]) -> np.ndarray:
        """All keypoints as one (N, K, 3) float32 array, checked for type, finiteness and visibility."""
        k = self.spec.num_keypoints
        try:
            arr = np.asarray([rec["keypoints"] for rec in records])
        except ValueError:  # nested lists of different shapes
            arr = np.asarray([], dtype=object)
        if arr.ndim != 2 or arr.dtype.kind not in "iuf":
            # Rare slow path: find the offending entry (a string, null, list or boolean) for the message.
            offender = next(
                (
                    (i, j, v)
                    for i, rec in enumerate(records)
                    for j, v in enumerate(rec["keypoints"])
                    if isinstance(v, bool) or not isinstance(v, (int, float))
                ),
                None,
            )
            if offender is not None:
                i, j, v = offender
                self.error(
                    "annotations",
                    ids[i],
                    "keypoints",
                    v,
                    f"(entry {j}) is not a number",
                    "keypoints must be a flat list of numbers x1, y1, v1, x2, ...",
                )
        flat = arr.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        if bad.size:
            i = bad[0]
            j = int(np.flatnonzero(~np.isfinite(flat[i]))[0])
            self.error(
                "annotations",
                ids[i],
                "keypoints",
                records[i]["keypoints"][j],
                f"(entry {j}) is not a finite number",
                "fix the coordinate",
            )
        kp = flat.reshape(len(records), k, 3)
        vis = kp[:, :, 2]
        bad = np.flatnonzero(~np.isin(vis, (0, 1, 2)).all(axis=1))
        if bad.size:
            i = bad[0]
            j = int(np.flatnonzero(~np.isin(vis[i], (0, 1, 2)))[0])
            self.error(
                "annotations",
                ids[i],
                "keypoints",
                vis[i, j],
                f"(visibility of keypoint {j} '{self.spec.keypoint_names[j]}') is not 0, 1 or 2",
                "use 0 = unlabelled, 1 = labelled but occluded, 2 = labelled",
            )
        kp = kp.astype(np.float32)
        # Instances share this buffer; read-only so an in-place augmentation cannot corrupt the dataset.
        kp.setflags(write=False)
        return kp

    def clip_boxes(
        self, boxes: np.ndarray, image_ids: list[int], images: dict[int, ImageRecord], ids: list[int]
    ) -> tuple[np.ndarray, int]:
        """mmpose 0.x box cleaning (see module docstring); returns clipped xywh boxes and the clip count."""
        x, y, w, h = boxes.T
        bad = np.flatnonzero((w <= 0) | (h <= 0))
        if bad.size:
            i = bad[0]
            self.error(
                "annotations",
                ids[i],
                "bbox",
                boxes[i].tolist(),
                "has non-positive width or height",
                "fix the box ([x, y, w, h] in pixels) or remove the annotation",
            )
        width = np.asarray([images[i].width for i in image_ids], dtype=np.float64)
        height = np.asarray([images[i].height for i in image_ids], dtype=np.float64)
        outside = (x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            self.error(
                "annotations",
                ids[i],
                "bbox",
                boxes[i].tolist(),
                f"does not overlap image {image_ids[i]} ({int(width[i])}x{int(height[i])})",
                "fix the box or the image size, or remove the annotation",
            )
        clipped = clip_boxes_to_image(boxes, width, height)
        degenerate = (clipped[:, 2] <= 0) | (clipped[:, 3] <= 0)
        if degenerate.any():
            i = int(np.flatnonzero(degenerate)[0])
            self.error(
                "annotations",
                ids[i],
                "bbox",
                boxes[i].tolist(),
                f"keeps less than 2 pixels of width or height inside image {image_ids[i]} "
                f"({int(width[i])}x{int(height[i])}) after clipping (mmpose would drop it)",
                "fix the box or remove the annotation",
            )
        reaches_out = (x < 0) | (y < 0) | (x + w > width) | (y + h > height)
        return clipped, int(reaches_out.sum())
