"""Training/test splits for the paper's few-shot and zero-shot settings, written as manifests.

The official CLAMP code publishes no split, so the splits are rebuilt here from the paper's
description, deterministically from a seed, and recorded in a manifest JSON (instance and image
ids, counts per species and per family, the source files' sha256) that a run keeps next to its
outputs. Same inputs and seed give a byte-identical manifest.

Modes (all selections are over the reader's *usable* instances, see :mod:`clamp.data.coco`); the
fields each mode takes are :data:`SPLIT_MODES`, and they are the config keys of ``conf/split/``:

* ``full``: every training instance.
* ``kshot`` (``k``, ``seed``): ``k`` instances per species (category), drawn with
  ``numpy.random.default_rng(seed)`` from each species' sorted instance ids, species in category-id
  order. A species with fewer than ``k`` takes all it has and is listed under
  ``notes.short_species``; species without any instance are listed under ``notes.absent_species``.
* ``fraction`` (``fraction``, ``seed``): a random ``fraction`` of all training instances (the paper's
  low-data COCO table, AP@k%), ``round(fraction * N)`` of them (at least 1), drawn like ``kshot``.
* ``family`` (``train_family``, ``test_family``): train = the training file's instances of
  ``train_family``; every evaluation part = its file's instances of ``test_family`` (zero-shot
  transfer, e.g. Bovidae -> Canidae). Family names match case-insensitively.
* ``idlist`` (``ids``): every instance in a published list of training *image* ids (a JSON array,
  e.g. ScarceNet's ``annotation_list_20``). Duplicates are collapsed; ids absent from the file are
  logged and listed under ``notes.missing_image_ids``.

The manifest is the record of what was trained *and* evaluated: besides ``train`` it holds one part
per evaluation file (``val``, ``test``): all usable instances of that file, or the test family's in
mode ``family``, where the part also lists the family's ``category_ids`` (the evaluation ground
truth is restricted to them). Datasets and the evaluation select their instances through it.

Command line (writes the manifest and prints counts per family)::

    python -m clamp.data.splits --ann data/ap10k/annotations/ap10k-train-split1.json \\
        --val-ann data/ap10k/annotations/ap10k-val-split1.json --dataset ap10k \\
        --mode family --train-family Bovidae --test-family Canidae --out splits/bovidae_canidae.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clamp.data.coco import CocoKeypoints, load_coco_keypoints
from clamp.errors import ClampError, close_matches, did_you_mean
from clamp.files import read_json
from clamp.keypoints import KEYPOINT_SPECS

log = logging.getLogger(__name__)

#: Each split mode and the fields it takes: the keys of its ``conf/split/`` file besides ``mode``.
SPLIT_MODES: dict[str, tuple[str, ...]] = {
    "full": (),
    "kshot": ("k", "seed"),
    "fraction": ("fraction", "seed"),
    "family": ("train_family", "test_family"),
    "idlist": ("ids",),
}
MODES = tuple(SPLIT_MODES)
FORMAT_VERSION = 2


class SplitError(ClampError, ValueError):
    """A split that cannot be built or applied; the message says why and what to do."""


@dataclass(frozen=True)
class SplitPart:
    """The selection for one part (``train`` or ``test``) of a split."""

    instance_ids: tuple[int, ...]
    image_ids: tuple[int, ...]
    species_counts: dict[str, int]
    family_counts: dict[str, int]
    # Evaluation parts of mode ``family``: the test family's categories, to which the ground truth is
    # restricted; None = every category of the file.
    category_ids: tuple[int, ...] | None = None

    @classmethod
    def from_instances(
        cls, data: CocoKeypoints, instance_ids: Sequence[int], category_ids: Sequence[int] | None = None
    ) -> SplitPart:
        """Summarise the given instances of ``data`` (ids, images, counts per species and family)."""
        wanted = set(instance_ids)
        chosen = [inst for inst in data.instances if inst.id in wanted]
        return cls(
            instance_ids=tuple(sorted(wanted)),
            image_ids=tuple(sorted({inst.image_id for inst in chosen})),
            species_counts=dict(Counter(data.species_name(inst.category_id) for inst in chosen)),
            family_counts=dict(Counter(data.family(inst.category_id) for inst in chosen)),
            category_ids=None if category_ids is None else tuple(sorted(category_ids)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_ids": list(self.instance_ids),
            "image_ids": list(self.image_ids),
            "num_instances": len(self.instance_ids),
            "num_images": len(self.image_ids),
            "species_counts": self.species_counts,
            "family_counts": self.family_counts,
            "category_ids": None if self.category_ids is None else list(self.category_ids),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitPart:
        categories = d.get("category_ids")
        return cls(
            instance_ids=tuple(int(i) for i in d["instance_ids"]),
            image_ids=tuple(int(i) for i in d["image_ids"]),
            species_counts={str(k): int(v) for k, v in d["species_counts"].items()},
            family_counts={str(k): int(v) for k, v in d["family_counts"].items()},
            category_ids=None if categories is None else tuple(int(c) for c in categories),
        )


@dataclass
class SplitManifest:
    """A built split: its parameters, source files (name + sha256) and per-part selections.

    ``parts`` maps ``train`` and each evaluation stage (``val``, ``test``) to its selection;
    ``sources`` maps each part and ``ids`` (mode ``idlist``) to ``{"file": name, "sha256": hex}``;
    only file names are stored, never absolute paths, so the manifest is identical across machines.
    ``seed`` is recorded only for ``kshot`` and ``fraction``, the modes that draw at random.
    """

    mode: str
    dataset: str
    sources: dict[str, dict[str, str]]
    parts: dict[str, SplitPart]
    seed: int | None = None
    k: int | None = None
    fraction: float | None = None
    train_family: str | None = None
    test_family: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "dataset": self.dataset,
            "seed": self.seed,
            "k": self.k,
            "fraction": self.fraction,
            "train_family": self.train_family,
            "test_family": self.test_family,
            "sources": self.sources,
            "parts": {name: part.to_dict() for name, part in self.parts.items()},
            "notes": self.notes,
        }

    def to_json(self) -> str:
        """Deterministic JSON text: sorted keys, 2-space indent, trailing newline, no timestamps."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    def write(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> SplitManifest:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if d.get("format_version") != FORMAT_VERSION:
                raise SplitError(f"format_version {d.get('format_version')!r}, expected {FORMAT_VERSION}")
            return cls(
                mode=d["mode"],
                dataset=d["dataset"],
                sources={role: dict(src) for role, src in d["sources"].items()},
                parts={name: SplitPart.from_dict(p) for name, p in d["parts"].items()},
                seed=d["seed"],
                k=d["k"],
                fraction=d["fraction"],
                train_family=d["train_family"],
                test_family=d["test_family"],
                notes=d["notes"],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise SplitError(
                f"{path}: not a valid split manifest ({type(err).__name__}: {err}); rebuild it with "
                "`python -m clamp.data.splits`"
            ) from None

    def summary(self) -> str:
        """A few human-readable lines: parameters, then counts per family for each part."""
        params = [f"mode={self.mode}"] + [
            f"{name}={value}"
            for name, value in (
                ("k", self.k),
                ("fraction", self.fraction),
                ("seed", self.seed),
                ("train_family", self.train_family),
                ("test_family", self.test_family),
            )
            if value is not None
        ]
        lines = [" ".join(params)]
        for name, part in self.parts.items():
            lines.append(
                f"{name}: {len(part.instance_ids)} instances in {len(part.image_ids)} images "
                f"({self.sources[name]['file']})"
            )
            lines += [f"  {fam}: {n}" for fam, n in sorted(part.family_counts.items())]
        for key, value in sorted(self.notes.items()):
            if isinstance(value, list) and len(value) > 8:
                value = f"{len(value)} ids, e.g. {value[:5]}"
            lines.append(f"note {key}: {value}")
        return "\n".join(lines)


def _source(data: CocoKeypoints) -> dict[str, str]:
    return {"file": data.path.name, "sha256": data.sha256}


def resolve_family(data: CocoKeypoints, family: str, role: str = "test") -> str:
    """The file's spelling of ``family`` (matched case-insensitively); unknown names get suggestions."""
    families = sorted({cat.family for cat in data.categories.values()})
    by_lower = {name.lower(): name for name in families}
    if family.lower() in by_lower:
        return by_lower[family.lower()]
    species = {cat.name.lower(): cat for cat in data.categories.values()}
    if family.lower() in species:
        cat = species[family.lower()]
        raise SplitError(
            f"{data.path.name}: '{family}' is a species of the family {cat.family}; family splits take "
            f"family names (e.g. {role} family {cat.family})"
        )
    species_hits = close_matches(family, [cat.name for cat in data.categories.values()])
    if species_hits and not close_matches(family, families):
        cat = species[species_hits[0].lower()]
        raise SplitError(
            f"{data.path.name}: unknown {role} family '{family}'; did you mean the species "
            f"'{cat.name}' (family {cat.family})? Family splits take family names: {families}"
        )
    raise SplitError(
        f"{data.path.name}: unknown {role} family '{family}'{did_you_mean(family, families)}; "
        f"families in this file: {families}"
    )


def family_category_ids(data: CocoKeypoints, family: str) -> list[int]:
    """The category (species) ids of ``family`` in ``data``."""
    family = resolve_family(data, family)
    return sorted(cid for cid, cat in data.categories.items() if cat.family == family)


def family_instance_ids(data: CocoKeypoints, family: str, role: str = "test") -> list[int]:
    """Ids of the usable instances whose species belongs to ``family``; clear error if none."""
    family = resolve_family(data, family, role)
    ids = [inst.id for inst in data.instances if data.family(inst.category_id) == family]
    if not ids:
        raise SplitError(
            f"{data.path.name}: {role} family '{family}' has no usable instance in this file; pick a family "
            "with annotations or check that this is the intended split file"
        )
    return ids


def _kshot(train: CocoKeypoints, k: int, seed: int) -> tuple[list[int], dict[str, Any]]:
    by_species: dict[int, list[int]] = {cid: [] for cid in train.categories}
    for inst in train.instances:
        by_species[inst.category_id].append(inst.id)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    short: dict[str, int] = {}
    absent: list[str] = []
    for cid in sorted(by_species):
        # Sorting first makes the draw independent of the record order in the file.
        ids = sorted(by_species[cid])
        if len(ids) <= k:
            chosen += ids
            if not ids:
                absent.append(train.species_name(cid))
            elif len(ids) < k:
                short[train.species_name(cid)] = len(ids)
        else:
            chosen += [ids[i] for i in rng.choice(len(ids), size=k, replace=False)]
    if short:
        log.warning("%d species have fewer than k=%d instances and contribute all they have: %s", len(short), k, short)
    notes: dict[str, Any] = {}
    if short:
        notes["short_species"] = short
    if absent:
        notes["absent_species"] = absent
    return chosen, notes


def _fraction(train: CocoKeypoints, fraction: float, seed: int) -> list[int]:
    ids = sorted(inst.id for inst in train.instances)
    if not ids:
        raise SplitError(f"{train.path.name}: no usable training instance to draw a fraction from")
    n = max(1, round(fraction * len(ids)))
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.choice(len(ids), size=n, replace=False)]


def read_id_list(path: str | Path) -> tuple[list[int], dict[str, str]]:
    """Read a JSON array of image ids (ScarceNet format); returns the ids and the file's source record."""
    path = Path(path)
    ids = read_json(path, "image id list")
    if not isinstance(ids, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise SplitError(f"{path}: expected a JSON array of integer image ids, e.g. [22669, 22705]")
    return ids, {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _idlist(train: CocoKeypoints, image_ids: Sequence[int]) -> tuple[list[int], dict[str, Any]]:
    unique = set(image_ids)
    missing = sorted(unique - set(train.images))
    chosen = [inst.id for inst in train.instances if inst.image_id in unique]
    used_images = {inst.image_id for inst in train.instances if inst.image_id in unique}
    empty = sorted(unique - set(missing) - used_images)
    notes: dict[str, Any] = {}
    if len(unique) != len(image_ids):
        notes["duplicate_ids_collapsed"] = len(image_ids) - len(unique)
    if missing:
        log.warning(
            "%s: %d of %d listed image ids are not in this file (recorded as missing_image_ids)",
            train.path.name,
            len(missing),
            len(unique),
        )
        notes["missing_image_ids"] = missing
    if empty:
        notes["image_ids_without_usable_instances"] = empty
    if not chosen:
        raise SplitError(
            f"{train.path.name}: none of the {len(unique)} listed image ids has a usable "
            "instance in this file; was the list made for another annotation file?"
        )
    return chosen, notes


def build_split(
    train: CocoKeypoints,
    mode: str,
    *,
    evaluation: Mapping[str, CocoKeypoints] | None = None,
    seed: int = 0,
    k: int | None = None,
    fraction: float | None = None,
    train_family: str | None = None,
    test_family: str | None = None,
    ids: Sequence[int] | str | Path | None = None,
) -> SplitManifest:
    """Build a split of ``train`` and of each ``evaluation`` file (``{"val": ..., "test": ...}``).

    The mode and its fields are described in the module docstring (:data:`SPLIT_MODES` lists which
    fields each mode takes). ``ids`` (mode ``idlist``) is a sequence of image ids or the path of a
    JSON id list; a path's file name and sha256 are recorded as the ``ids`` source.
    """
    if mode not in SPLIT_MODES:
        raise SplitError(f"unknown split mode '{mode}'{did_you_mean(mode, SPLIT_MODES)}; choose one of {list(MODES)}")
    given = {"k": k, "fraction": fraction, "train_family": train_family, "test_family": test_family, "ids": ids}
    extra = sorted(name for name, value in given.items() if value is not None and name not in SPLIT_MODES[mode])
    if extra:
        raise SplitError(f"split mode '{mode}' takes {list(SPLIT_MODES[mode]) or 'no options'}, not {extra}")
    evaluation = dict(evaluation or {})
    sources = {"train": _source(train)}
    notes: dict[str, Any] = {}
    manifest_seed = manifest_k = manifest_fraction = None
    if mode == "full":
        chosen = [inst.id for inst in train.instances]
    elif mode == "kshot":
        if k is None or k < 1:
            raise SplitError(f"mode 'kshot' needs k >= 1 instances per species (got {k}); pass --k 20")
        chosen, notes = _kshot(train, k, seed)
        manifest_seed, manifest_k = seed, k
    elif mode == "fraction":
        if fraction is None or not 0 < fraction <= 1:
            raise SplitError(f"mode 'fraction' needs 0 < fraction <= 1 (got {fraction}); pass --fraction 0.01")
        chosen = _fraction(train, fraction, seed)
        manifest_seed, manifest_fraction = seed, fraction
    elif mode == "family":
        if train_family is None:
            raise SplitError("mode 'family' needs a training family (--train-family, e.g. Bovidae)")
        if evaluation and test_family is None:
            raise SplitError("mode 'family' with evaluation files needs a test family (--test-family, e.g. Canidae)")
        train_family = resolve_family(train, train_family, "train")
        chosen = family_instance_ids(train, train_family, "train")
    else:
        if ids is None:
            raise SplitError("mode 'idlist' needs a list of image ids (--ids FILE)")
        if isinstance(ids, (str, Path)):
            ids, sources["ids"] = read_id_list(ids)
        chosen, notes = _idlist(train, ids)
    parts = {"train": SplitPart.from_instances(train, chosen)}
    for stage, data in evaluation.items():
        sources[stage] = _source(data)
        if mode == "family":
            assert test_family is not None  # checked above: evaluation files need a test family
            test_family = resolve_family(data, test_family)
            parts[stage] = SplitPart.from_instances(
                data, family_instance_ids(data, test_family), family_category_ids(data, test_family)
            )
        else:
            parts[stage] = SplitPart.from_instances(data, [inst.id for inst in data.instances])
    return SplitManifest(
        mode=mode,
        dataset=train.spec.name,
        sources=sources,
        parts=parts,
        seed=manifest_seed,
        k=manifest_k,
        fraction=manifest_fraction,
        train_family=train_family if mode == "family" else None,
        test_family=test_family if mode == "family" else None,
        notes=notes,
    )


def apply_split(data: CocoKeypoints, manifest: SplitManifest, part: str = "train") -> CocoKeypoints:
    """Restrict ``data`` to one part of a manifest, after checking it is the file the split was built from."""
    if part not in manifest.parts:
        raise SplitError(
            f"split manifest (mode '{manifest.mode}') has no part '{part}'; it has {sorted(manifest.parts)}"
        )
    source = manifest.sources[part]
    if data.sha256 != source["sha256"]:
        raise SplitError(
            f"{data.path.name} (sha256 {data.sha256[:12]}...) is not the file this split's '{part}' part was "
            f"built from ({source['file']}, sha256 {source['sha256'][:12]}...); pass that file or rebuild "
            "the split"
        )
    return data.subset(manifest.parts[part].instance_ids)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clamp.data.splits",
        description="Build a CLAMP split and write it as a manifest JSON "
        "(ids, counts per species and family, sha256 of the sources).",
        epilog="example: python -m clamp.data.splits --ann ap10k-train-split1.json --dataset ap10k "
        "--val-ann ap10k-val-split1.json --mode kshot --k 20 --seed 0 --out splits/fewshot20_seed0.json",
    )
    parser.add_argument("--ann", required=True, type=Path, help="training annotation JSON (COCO keypoints)")
    parser.add_argument("--val-ann", type=Path, help="validation annotation JSON (recorded as part 'val')")
    parser.add_argument("--test-ann", type=Path, help="test annotation JSON (recorded as part 'test')")
    parser.add_argument(
        "--dataset", default="ap10k", choices=sorted(KEYPOINT_SPECS), help="keypoint spec of the files (default: ap10k)"
    )
    parser.add_argument(
        "--mode",
        required=True,
        choices=MODES,
        help="full: all instances; kshot: k per species; fraction: a random share of all "
        "instances; family: train on one family, test on another; idlist: the images "
        "in a published id list",
    )
    parser.add_argument("--k", type=int, help="instances per species (mode kshot)")
    parser.add_argument("--fraction", type=float, help="share of training instances, e.g. 0.01 (mode fraction)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (modes kshot, fraction; default 0)")
    parser.add_argument("--train-family", help="training family, e.g. Bovidae (mode family)")
    parser.add_argument("--test-family", help="test family, e.g. Canidae, of the evaluation files (mode family)")
    parser.add_argument("--ids", type=Path, help="JSON array of training image ids (mode idlist)")
    parser.add_argument("--out", required=True, type=Path, help="manifest JSON to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 with a one-line message on bad input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = {name: getattr(args, name) for name in SPLIT_MODES[args.mode]}
    try:
        loaded: dict[Path, CocoKeypoints] = {}

        def load(path: Path) -> CocoKeypoints:
            if path not in loaded:
                loaded[path] = load_coco_keypoints(path, args.dataset)
            return loaded[path]

        train = load(args.ann)
        evaluation = {
            stage: load(path) for stage, path in (("val", args.val_ann), ("test", args.test_ann)) if path is not None
        }
        manifest = build_split(train, args.mode, evaluation=evaluation, **options)
        manifest.write(args.out)
    except (ClampError, OSError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(manifest.summary())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
