"""LightningDataModule: annotation files + split + top-down transforms, assembled from config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader

from clamp.data.coco import CocoKeypoints, load_coco_keypoints
from clamp.data.dataset import TopDownDataset, worker_init_fn
from clamp.data.keypoints import get_keypoint_spec
from clamp.data.splits import SplitManifest, apply_split, build_split, family_instance_ids
from clamp.data.synthetic import ensure_synthetic_ap10k
from clamp.data.transforms import TopDownTransform

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class MissingDataError(FileNotFoundError):
    """A dataset file the run needs is not on disk; the message says how to provide it."""


class PoseDataModule(L.LightningDataModule):
    """Builds train/val/test :class:`TopDownDataset` s for one dataset, split and input geometry.

    ``splits`` maps each stage to ``{"ann": file, "images": folder}`` relative to ``root``.
    ``split`` is the split-builder config (``mode`` plus its arguments, as in
    :func:`clamp.data.splits.build_split`); the manifest is written to ``manifest_path``.
    ``batch_size`` is the global batch: each of the ``world_size`` processes loads its share.
    """

    def __init__(
        self,
        keypoints: str | Mapping[str, Any],
        root: str,
        splits: Mapping[str, Mapping[str, str]],
        split: Mapping[str, Any],
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        coarse_size: tuple[int, int],
        batch_size: int,
        num_workers: int = 4,
        sigma: float = 2.0,
        augmentation: Mapping[str, Any] | None = None,
        seed: int = 0,
        manifest_path: str | None = None,
        generate: Mapping[str, Any] | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = get_keypoint_spec(keypoints)
        self.root = Path(root)
        self.data: dict[str, CocoKeypoints] = {}
        self.datasets: dict[str, TopDownDataset] = {}
        self.manifest: SplitManifest | None = None

    # ---- paths ----------------------------------------------------------------------------
    def annotation_path(self, stage: str) -> Path:
        return self.root / self.hparams.splits[stage]["ann"]

    def image_root(self, stage: str) -> Path:
        return self.root / self.hparams.splits[stage]["images"]

    def check_files(self, stages: tuple[str, ...] = STAGES) -> None:
        """Fail fast, before any model or worker starts, when a dataset file is missing."""
        if self.hparams.generate is None:
            check_dataset_files(self.spec.name, self.root, self.hparams.splits, stages)

    # ---- Lightning hooks ------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.hparams.generate is not None:
            ensure_synthetic_ap10k(self.root, **dict(self.hparams.generate))

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", STAGES)
        self.check_files(("train",) + tuple(stages))
        for name in ("train",) + tuple(stages):
            if name not in self.data:
                self.data[name] = self._load(name)
        if self.manifest is None:
            self.manifest = self._build_manifest()
        for name in stages:
            if name not in self.datasets:
                self.datasets[name] = self._dataset(name)

    def _load(self, stage: str) -> CocoKeypoints:
        return load_coco_keypoints(self.annotation_path(stage), self.spec, image_root=self.image_root(stage))

    def _build_manifest(self) -> SplitManifest:
        cfg = dict(self.hparams.split)
        mode = cfg.pop("mode")
        kwargs: dict[str, Any] = {"seed": cfg.pop("seed", self.hparams.seed)}
        if mode == "kshot":
            kwargs["k"] = cfg.pop("k")
        elif mode == "family":
            if "val" not in self.data:
                self.data["val"] = self._load("val")
            kwargs.update(train_family=cfg.pop("train_family"), test_family=cfg.pop("test_family"),
                          test=self.data["val"])
        elif mode == "idlist":
            kwargs["image_ids"] = cfg.pop("ids")
        elif mode == "fraction":
            kwargs["fraction"] = cfg.pop("fraction")
        if cfg:
            raise ValueError(f"split: unknown option(s) {sorted(cfg)} for mode '{mode}'")
        manifest = build_split(self.data["train"], mode, **kwargs)
        if self.hparams.manifest_path and (self.trainer is None or self.trainer.is_global_zero):
            Path(self.hparams.manifest_path).parent.mkdir(parents=True, exist_ok=True)
            manifest.write(self.hparams.manifest_path)
        log.info("split %s", manifest.summary())
        return manifest

    def stage_data(self, stage: str) -> CocoKeypoints:
        """The annotations a stage uses: the split's training part, or the evaluation set
        (restricted to the test family in zero-shot family transfer)."""
        data = self.data[stage]
        if stage == "train":
            return apply_split(data, self.manifest, "train")
        if self.manifest.mode == "family":
            return data.subset(family_instance_ids(data, self.manifest.test_family))
        return data

    def _dataset(self, stage: str) -> TopDownDataset:
        aug = dict(self.hparams.augmentation or {})
        center_jitter_prob = aug.pop("center_jitter_prob", 0.0)
        training = stage == "train"
        transform = TopDownTransform(self.spec, input_size=tuple(self.hparams.input_size), training=training,
                                     seed=self.hparams.seed, **(aug if training else {}))
        return TopDownDataset(
            self.stage_data(stage),
            transform,
            heatmap_size=tuple(self.hparams.heatmap_size),
            coarse_size=tuple(self.hparams.coarse_size),
            sigma=self.hparams.sigma,
            seed=self.hparams.seed,
            center_jitter_prob=center_jitter_prob if training else 0.0,
        )

    def coco_gt(self, stage: str) -> dict[str, Any]:
        """COCO ground truth of exactly the instances evaluated in ``stage`` (for pycocotools)."""
        if stage not in self.datasets:
            self.setup({"val": "validate", "test": "test"}[stage])
        return self.datasets[stage].data.to_coco_gt()

    # ---- loaders --------------------------------------------------------------------------
    def per_device_batch_size(self, batch_size: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if batch_size % world:
            raise ValueError(f"data.batch_size={batch_size} (the global batch) is not divisible by the "
                             f"{world} training processes; pick a multiple of {world}")
        return batch_size // world

    def _loader(self, stage: str, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.datasets[stage],
            batch_size=self.per_device_batch_size(batch_size),
            shuffle=shuffle,
            drop_last=shuffle and len(self.datasets[stage]) > batch_size,
            num_workers=workers,
            worker_init_fn=worker_init_fn,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)


def check_dataset_files(
    dataset: str, root: str | Path, splits: Mapping[str, Mapping[str, str]], stages: tuple[str, ...] = STAGES
) -> None:
    """Raise :class:`MissingDataError` naming the first missing annotation file or image folder."""
    root = Path(root)
    for stage in stages:
        files = ((root / splits[stage]["ann"], "annotation file"), (root / splits[stage]["images"], "image folder"))
        for path, what in files:
            if not path.exists():
                raise MissingDataError(
                    f"{dataset} {stage} {what} not found: {path}\n"
                    f"Put the dataset under data.root={root} (README, 'Datasets'), or point data.root / "
                    f"paths.data_dir at your copy. To try everything offline instead: "
                    f"python -m clamp.train +experiment=demo"
                )
