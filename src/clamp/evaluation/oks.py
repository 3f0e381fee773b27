"""COCO OKS keypoint AP with pycocotools, as the official (xtcocotools) evaluator computes it.

Protocol (``shared/docs/reference/datasets_and_eval.md`` §4.2):

- ``COCOeval(gt, dt, 'keypoints')`` with ``params.kpt_oks_sigmas`` set to the dataset sigmas
  *after* construction (the constructor resets them to the 17 COCO-human values);
- ``useCats=1`` (the default, never changed): predictions match only GT of their own
  ``category_id``, and AP is the unweighted mean over the categories (species) that have GT.
  ``useCats=0`` is broken for keypoints (AP 0); for a class-agnostic AP give everything one id;
- GT with ``iscrowd`` or ``num_keypoints == 0`` is ignored by pycocotools itself.

Per-species and per-family numbers are computed from the one evaluation's per-category
``precision``/``recall`` arrays with the same reduction as ``COCOeval.summarize``. Matching and
accumulation in COCOeval are independent per category, so these equal running COCOeval with
``params.catIds`` restricted to that species or family (checked in the tests).

CLI: ``python -m clamp.evaluation.oks --gt GT.json --dt RESULTS.json --dataset ap10k`` prints
one JSON object with AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL, per_species, per_family.
A stat of -1 means "no GT in that area range", as pycocotools reports it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import sys
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
# (is AP, IoU threshold or None for 0.50:0.95, area range label) in COCOeval._summarizeKps order.
_SUMMARY = (
    (True, None, "all"),
    (True, 0.5, "all"),
    (True, 0.75, "all"),
    (True, None, "medium"),
    (True, None, "large"),
    (False, None, "all"),
    (False, 0.5, "all"),
    (False, 0.75, "all"),
    (False, None, "medium"),
    (False, None, "large"),
)
_GT_FIELDS = ("id", "image_id", "category_id", "keypoints", "area", "bbox", "num_keypoints")


class SparseCOCOeval(COCOeval):
    """``COCOeval`` whose ``evaluate`` visits only the (image, category) pairs that hold GT or results.

    pycocotools visits every pair: for an empty one ``computeOks`` returns [] and ``evaluateImg`` None,
    which ``accumulate`` skips. On AP-10K (54 species, one per image) 98% of the pairs are empty, so
    skipping them leaves ``evalImgs`` (None at the empty pairs), and with it every precision, recall and
    stat, exactly COCOeval's (the tests compare the arrays), about 10x faster.
    """

    def evaluate(self) -> None:
        """Per-image evaluation of the non-empty pairs into ``self.evalImgs`` (COCOeval's layout)."""
        p = self.params
        if p.iouType != "keypoints" or not p.useCats:
            raise ValueError("SparseCOCOeval evaluates keypoints per category (iouType='keypoints', useCats=1)")
        p.imgIds = list(np.unique(p.imgIds))
        p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self._prepare()
        occupied = {pair for pair, records in (*self._gts.items(), *self._dts.items()) if records}
        self.ious = {pair: self.computeOks(*pair) for pair in occupied}
        max_det = p.maxDets[-1]
        self.evalImgs = [
            self.evaluateImg(image_id, cat_id, area, max_det) if (image_id, cat_id) in occupied else None
            for cat_id in p.catIds
            for area in p.areaRng
            for image_id in p.imgIds
        ]
        self._paramsEval = copy.deepcopy(p)


def _load_json(source: str | Path, what: str) -> Any:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} file {path} is not valid JSON: {exc}") from None


def _check_gt(gt: Mapping[str, Any], num_keypoints: int, name: str) -> None:
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise ValueError(f"GT {name}: needs a '{key}' list (COCO keypoint format)")
    for ann in gt["annotations"]:
        missing = [f for f in _GT_FIELDS if f not in ann]
        if missing:
            raise ValueError(f"GT {name}: annotation id {ann.get('id')} lacks field(s) {missing}")
        if len(ann["keypoints"]) != 3 * num_keypoints:
            raise ValueError(
                f"GT {name}: annotation id {ann['id']} has {len(ann['keypoints'])} keypoint values, expected "
                f"{3 * num_keypoints} (3 x {num_keypoints} keypoints); wrong dataset/sigmas for this file?"
            )


def _check_results(results: Any, num_keypoints: int, image_ids: set[int], name: str) -> None:
    if not isinstance(results, list):
        raise ValueError(f"results {name}: expected a list of result dicts, got {type(results).__name__}")
    for i, r in enumerate(results):
        if not isinstance(r, Mapping):
            raise ValueError(f"results {name}: entry {i} is {type(r).__name__}, expected a dict")
        missing = [f for f in ("image_id", "category_id", "keypoints", "score") if f not in r]
        if missing:
            raise ValueError(f"results {name}: entry {i} lacks field(s) {missing}")
        try:
            kpts = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1)
            score = float(r["score"])
        except (TypeError, ValueError):
            raise ValueError(f"results {name}: entry {i}: keypoints/score must be numbers") from None
        if len(kpts) != 3 * num_keypoints:
            raise ValueError(
                f"results {name}: entry {i} (image_id {r['image_id']}) has {len(kpts)} keypoint values, "
                f"expected {3 * num_keypoints} (3 x {num_keypoints} keypoints for these sigmas)"
            )
        if not np.isfinite(kpts).all() or not math.isfinite(score):
            raise ValueError(f"results {name}: entry {i} (image_id {r['image_id']}) has non-finite values")
        if r["image_id"] not in image_ids:
            raise ValueError(
                f"results {name}: entry {i} has image_id {r['image_id']}, which is not an image of the GT; "
                "evaluate against the GT file the predictions were made for"
            )


def _summarize(E: COCOeval, category_index: Sequence[int]) -> dict[str, float]:
    """``COCOeval._summarizeKps`` restricted to the given indices into ``E.params.catIds``."""
    p = E.params
    mind = [i for i, m in enumerate(p.maxDets) if m == p.maxDets[-1]]
    out = {}
    for name, (is_ap, iou, area) in zip(STAT_NAMES, _SUMMARY):
        aind = [i for i, a in enumerate(p.areaRngLbl) if a == area]
        s = E.eval["precision"][:, :, category_index] if is_ap else E.eval["recall"][:, category_index]
        if iou is not None:
            s = s[np.where(iou == p.iouThrs)[0]]
        s = s[:, :, :, aind, mind] if is_ap else s[:, :, aind, mind]
        out[name] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
    return out


def _zero_report() -> dict[str, Any]:
    return {**{k: 0.0 for k in STAT_NAMES}, "per_species": {}, "per_family": {}}


def evaluate_keypoints(
    gt: Mapping[str, Any] | str | Path,
    results: Sequence[Mapping[str, Any]] | str | Path,
    sigmas: Sequence[float],
    *,
    family_of: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """COCO keypoint AP of ``results`` against ``gt`` with the dataset's OKS ``sigmas``.

    Args:
        gt: COCO keypoint GT dict or path to its JSON; passed to pycocotools unchanged (its records
            are copied because COCOeval writes ``ignore`` flags into the annotations).
        results: COCO results list (``image_id``, ``category_id``, ``keypoints`` of length 3K,
            ``score``) or path to its JSON.
        sigmas: the K per-keypoint OKS sigmas.
        family_of: category id -> family name; default: each GT category's ``supercategory``.

    Returns:
        ``AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL`` (floats, exactly pycocotools'
        ``stats``), ``per_species`` {category id: {name, family, <the ten stats>}} for the categories
        with evaluated GT, and ``per_family`` {family: {num_species, <the ten stats>}}.
        Empty results give all zeros and a warning.

    Raises:
        FileNotFoundError / ValueError: missing files, malformed GT, results with a keypoint count
        other than 3K, non-finite values or image ids absent from the GT (the message names the entry).
    """
    gt_name = str(gt) if isinstance(gt, (str, Path)) else "dict"
    res_name = str(results) if isinstance(results, (str, Path)) else "list"
    gt_dict = _load_json(gt, "GT") if isinstance(gt, (str, Path)) else gt
    res_list = _load_json(results, "results") if isinstance(results, (str, Path)) else list(results)
    sigma_array = np.asarray(sigmas, dtype=np.float64)
    num_keypoints = len(sigma_array)
    if not isinstance(gt_dict, Mapping):
        raise ValueError(f"GT {gt_name}: expected a COCO dict, got {type(gt_dict).__name__}")
    _check_gt(gt_dict, num_keypoints, gt_name)
    _check_results(res_list, num_keypoints, {img["id"] for img in gt_dict["images"]}, res_name)
    if not res_list:
        warnings.warn(f"no keypoint results to evaluate ({res_name}); reporting AP = AR = 0", stacklevel=2)
        return _zero_report()

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        # pycocotools sets fields on the records themselves (``ignore`` on GT; ``id``, ``area``, ``bbox`` on
        # results) and never changes their lists in place: a copy of each record keeps the caller's intact.
        coco_gt.dataset = {**gt_dict, "annotations": [dict(a) for a in gt_dict["annotations"]]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in res_list])
        E = SparseCOCOeval(coco_gt, coco_dt, "keypoints")
        E.params.kpt_oks_sigmas = sigma_array
        E.evaluate()
        E.accumulate()
        E.summarize()
    report: dict[str, Any] = dict(zip(STAT_NAMES, (float(s) for s in E.stats)))

    categories = {c["id"]: c for c in gt_dict["categories"]}
    cat_ids = [int(c) for c in E.params.catIds]
    # A category has evaluated GT iff its precision entries were filled (> -1) for area "all".
    evaluated = [i for i, c in enumerate(cat_ids) if (E.eval["precision"][:, :, i, 0, -1] > -1).any()]
    if family_of is None:
        family_of = {cid: c.get("supercategory", "") for cid, c in categories.items()}
    per_species: dict[int, dict[str, Any]] = {}
    families: dict[str, list[int]] = defaultdict(list)
    for i in evaluated:
        cid = cat_ids[i]
        if cid not in family_of:
            raise ValueError(f"family_of has no family for category id {cid}; give one for every GT category")
        name = categories.get(cid, {}).get("name", str(cid))
        per_species[cid] = {"name": name, "family": family_of[cid], **_summarize(E, [i])}
        families[family_of[cid]].append(i)
    report["per_species"] = per_species
    report["per_family"] = {
        fam: {"num_species": len(idx), **_summarize(E, idx)} for fam, idx in sorted(families.items())
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status (0 ok, 2 bad input)."""
    from clamp.keypoints import KEYPOINT_SPECS, get_keypoint_spec

    parser = argparse.ArgumentParser(
        prog="python -m clamp.evaluation.oks",
        description="COCO OKS keypoint AP (pycocotools, dataset sigmas, per-species averaging). Prints JSON.",
    )
    parser.add_argument("--gt", required=True, help="COCO keypoint GT JSON")
    parser.add_argument("--dt", required=True, help="COCO keypoint results JSON")
    parser.add_argument("--dataset", required=True, choices=sorted(KEYPOINT_SPECS), help="selects OKS sigmas")
    args = parser.parse_args(argv)
    try:
        report = evaluate_keypoints(args.gt, args.dt, get_keypoint_spec(args.dataset).sigmas)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
