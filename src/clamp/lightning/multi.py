"""LightningDataModule for several datasets trained as one in a union keypoint space (``data=multi``).

Each member is a :class:`~clamp.lightning.datamodule.PoseDataModule` of its own (its files, layout,
split manifest, image checks, ground truth), so a member is read and scored exactly as it is alone.
Training draws from the members' training sets at their ``ratio`` (:class:`clamp.data.multi.RatioSampler`),
in the channels of the union (:class:`clamp.keypoints.KeypointUnion`); validation and test have one
loader per member, scored on the member's own keypoints and sigmas by
:class:`clamp.evaluation.multi.MultiDatasetAPMetric`.

From each member's config only ``keypoints``, ``root``, ``splits``, ``generate`` and ``ratio`` are read:
batch size, workers, targets and augmentation are those of the one training set, the top-level
``data.*`` keys. A top-level ``generate`` makes every member synthetic, in its own layout, under
``root/<member name>`` (what ``+debug=smoke`` and ``+debug=tiny`` set).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from clamp.data.dataset import collate_samples
from clamp.data.multi import MultiTopDownDataset, RatioSampler, UnionView
from clamp.errors import ClampError
from clamp.files import MAX_IMAGE_PIXELS
from clamp.keypoints import KeypointSpec, KeypointUnion, get_keypoint_spec, get_keypoint_union
from clamp.lightning.datamodule import (
    _LIGHTNING_STAGES,
    STAGES,
    PoseDataModule,
    check_dataset_files,
    init_loader_worker,
    normalize_uint8_batch,
)

log = logging.getLogger(__name__)

MEMBER_KEYS = ("keypoints", "root", "splits", "generate", "ratio")


class MultiDataConfigError(ClampError):
    """A ``data=multi`` config whose members cannot be composed into the union; the message says why."""


def member_settings(
    datasets: Mapping[str, Mapping[str, Any]], root: str | None = None, generate: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Each member's ``keypoints``, ``root``, ``splits``, ``generate`` and ``ratio`` (module docstring)."""
    if not datasets:
        raise MultiDataConfigError("data.datasets is empty: name at least one member dataset")
    if root is not None and not generate:
        raise MultiDataConfigError(
            "data.root is only read with data.generate (synthetic members); each real member has its own "
            "data.datasets.<name>.root"
        )
    members = {}
    for name, cfg in _plain(datasets).items():
        missing = [key for key in ("keypoints", "root", "splits") if cfg.get(key) is None and not generate]
        if missing:
            raise MultiDataConfigError(f"data.datasets.{name} lacks {missing}")
        member = {key: cfg.get(key) for key in MEMBER_KEYS}
        if generate:
            if root is None:
                raise MultiDataConfigError(
                    "data.generate is set but data.root is not: the synthetic members go under it"
                )
            member["root"] = str(Path(root) / name)
            # Each member writes only its own folder (generate.out, see datamodule.writes_dataset).
            member["generate"] = {
                **dict(generate),
                "dataset": get_keypoint_spec(member["keypoints"]).name,
                "out": member["root"],
            }
        members[name] = member
    return members


def _plain(value: Any) -> Any:
    """Nested mappings and lists as plain dicts and lists (configs may hand in OmegaConf containers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def check_member_files(data: Mapping[str, Any]) -> None:
    """Fail fast, before a model is built, when a member dataset's file is missing."""
    for name, member in member_settings(data["datasets"], data.get("root"), data.get("generate")).items():
        if member["generate"] is None:
            check_dataset_files(
                f"{name} ({get_keypoint_spec(member['keypoints']).name})", member["root"], member["splits"]
            )


#: What a member has of its own (``data.datasets.<name>`` and its manifest); every other argument of
#: :class:`PoseDataModule` is given to all members alike and must be one of MultiPoseDataModule's too.
_OWN_ARGUMENTS = ("self", "keypoints", "root", "splits", "generate", "manifest_path")
SHARED_KEYS = tuple(
    name for name in inspect.signature(PoseDataModule.__init__).parameters if name not in _OWN_ARGUMENTS
)


def _member_module(member: Mapping[str, Any], manifest_path: str | None, shared: Mapping[str, Any]) -> PoseDataModule:
    # Built outside MultiPoseDataModule.__init__: Lightning's save_hyperparameters reads the arguments of
    # every enclosing data-module __init__ frame, and would store the union's root and generate as the member's.
    return PoseDataModule(
        keypoints=member["keypoints"],
        root=member["root"],
        splits=member["splits"],
        generate=member["generate"],
        manifest_path=manifest_path,
        **{key: shared[key] for key in SHARED_KEYS},
    )


class MultiPoseDataModule(L.LightningDataModule):
    """Train on the members of ``datasets`` as one set in the union ``keypoints``; evaluate each alone.

    ``datasets`` maps member names to their settings (module docstring); ``keypoints`` names the union
    (a registered name or its dict form, :func:`clamp.keypoints.get_keypoint_union`), which must have
    each member's keypoint spec as a member. ``epoch_size`` is the number of training samples an epoch
    draws (default: the members' total). Every other argument is :class:`PoseDataModule`'s, for all
    members; ``manifest_path`` ``X.json`` writes each member's split manifest to ``X.<member>.json``.
    """

    def __init__(
        self,
        keypoints: str | Mapping[str, Any],
        datasets: Mapping[str, Mapping[str, Any]],
        split: Mapping[str, Any],
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        coarse_size: tuple[int, int] | None,
        batch_size: int,
        num_workers: int = 4,
        sigma: float = 2.0,
        coarse_target: str = "official",
        augmentation: Mapping[str, Any] | None = None,
        seed: int = 0,
        manifest_path: str | None = None,
        root: str | None = None,
        generate: Mapping[str, Any] | None = None,
        epoch_size: int | None = None,
        eval_batch_size: int | None = None,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        max_bad_fraction: float = 0.01,
        reduced_decode: bool = False,
        uint8_images: bool = False,
        decoded_cache: str | None = None,
        splits: Any = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if splits is not None:
            raise MultiDataConfigError("data.splits is per member with data=multi: set data.datasets.<name>.splits")
        self.union: KeypointUnion = get_keypoint_union(keypoints)
        self.spec: KeypointSpec = self.union.spec
        settings = member_settings(datasets, root, generate)
        self.ratios: dict[str, float | None] = {}
        self.members: dict[str, PoseDataModule] = {}
        for name, member in settings.items():
            spec = get_keypoint_spec(member["keypoints"])
            if spec.name not in self.union.members:
                raise MultiDataConfigError(
                    f"data.datasets.{name}: its keypoints '{spec.name}' are not a member of the union "
                    f"'{self.union.name}' (members {sorted(self.union.members)}); declare the mapping in "
                    "clamp.keypoints or give data.keypoints as a union dict"
                )
            self.union.channels(spec)  # refuses a spec that only shares its name with the union's member
            self.ratios[name] = None if member["ratio"] is None else float(member["ratio"])
            manifest = None if manifest_path is None else str(Path(manifest_path).with_suffix(f".{name}.json"))
            self.members[name] = _member_module(member, manifest, dict(self.hparams))
        given = [r is not None for r in self.ratios.values()]
        if any(given) and not all(given):
            raise MultiDataConfigError(
                f"data.datasets ratios {self.ratios}: give every member a ratio, or none (in proportion to size)"
            )
        self.datasets: dict[str, Any] = {}
        self._resume: tuple[int, int] | None = None

    # ---- what the training module asks ------------------------------------------------------
    def member_specs(self) -> list[tuple[str, KeypointSpec]]:
        """(name, keypoint spec) of every member, in ``dataset_index`` order."""
        return [(name, member.spec) for name, member in self.members.items()]

    def ground_truth(self, stage: str, member: str) -> dict[str, Any]:
        """A member's COCO ground truth of ``stage``, as it is scored alone."""
        return self.members[member].ground_truth(stage)

    def provenance(self) -> dict[str, Any]:
        parts = {name: member.provenance() for name, member in self.members.items()}
        return {
            "dataset": self.union.name,
            "synthetic_data": any(p["synthetic_data"] for p in parts.values()),
            "datasets": parts,
            "split_mode": next(iter(parts.values()))["split_mode"],
        }

    def check_files(self, stages: tuple[str, ...] = STAGES) -> None:
        for member in self.members.values():
            member.check_files(stages)

    # ---- Lightning hooks ------------------------------------------------------------------
    def prepare_data(self) -> None:
        for member in self.members.values():
            member.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        stages = _LIGHTNING_STAGES.get(stage or "", STAGES)
        for member in self.members.values():
            member.trainer = self.trainer
            member.setup(stage)
        k = self.spec.num_keypoints
        for name in stages:
            if name in self.datasets:
                continue
            views = [
                UnionView(member.datasets[name], self.union.channels(member.spec), k, index)
                for index, member in enumerate(self.members.values())
            ]
            self.datasets[name] = MultiTopDownDataset(views) if name == "train" else views
        if "train" in stages:
            sizes = [len(view) for view in self.datasets["train"].datasets]
            counts = RatioSampler(sizes, self._ratios(sizes), epoch_size=self.hparams.epoch_size).counts
            log.info(
                "training on %s",
                ", ".join(
                    f"{name} ({size} instances, {count} per epoch)"
                    for name, size, count in zip(self.members, sizes, counts, strict=True)
                ),
            )

    def _ratios(self, sizes: list[int]) -> list[float]:
        """The configured ratios, or the training sets' sizes when none is given."""
        given = [r for r in self.ratios.values() if r is not None]
        return given if given else [float(size) for size in sizes]

    def bad_sample_limit(self, stage: str) -> int:
        dataset = self.datasets.get(stage)
        size = len(dataset) if stage == "train" else sum(len(v) for v in dataset or [])
        return max(1, math.floor(self.hparams.max_bad_fraction * size))

    # ---- exact resume (as PoseDataModule) ---------------------------------------------------
    state_dict = PoseDataModule.state_dict
    load_state_dict = PoseDataModule.load_state_dict

    # ---- loaders --------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        dataset: MultiTopDownDataset = self.datasets["train"]
        trainer = self.trainer
        sizes = [len(view) for view in dataset.datasets]
        sampler = RatioSampler(
            sizes,
            self._ratios(sizes),
            epoch_size=self.hparams.epoch_size,
            seed=self.hparams.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        first = next(iter(self.members.values()))
        per_device = first.per_device_batch_size(self.hparams.batch_size)
        if self._resume is not None:
            epoch, batches = self._resume
            sampler.set_epoch(epoch)
            sampler.resume(epoch, batches * per_device)
            self._resume = None
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=per_device,
            sampler=sampler,
            collate_fn=collate_samples,
            drop_last=sampler.num_samples > self.hparams.batch_size,
            num_workers=workers,
            worker_init_fn=init_loader_worker if workers > 0 else None,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return normalize_uint8_batch(batch)

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        # Each member's own evaluation loader, over its samples laid out in the union's channels.
        batch_size = self.hparams.eval_batch_size or self.hparams.batch_size
        loaders = []
        for view, member in zip(self.datasets[stage], self.members.values(), strict=True):
            member.datasets[stage] = view
            loaders.append(member._loader(stage, batch_size))
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
