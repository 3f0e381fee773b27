"""LightningDataModule: annotation files + split + top-down transforms, assembled from config.

What can go wrong with data is decided here, before the first step (``setup``): missing files,
an empty training or evaluation set, and images that are missing, not images, larger than the
pixel cap or not the size their annotation file gives all stop the run with one message. Images
that only fail when decoded (truncated, corrupt) are skipped and counted during the run, up to
``max_bad_fraction`` of a stage's samples (:meth:`bad_sample_limit`).

A data module reads its dataset; it writes one only where its ``generate`` settings say so
(:func:`writes_dataset`): a synthetic dataset into the one folder they name (``generate.out``, the
demo's ``data/synthetic``) when that folder is the data root. A ``root`` pointed anywhere else is read as
it is, and a missing dataset there is an error, never a reason to write into a user's folder.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

from clamp.codec import HeatmapCodec
from clamp.data.coco import CocoKeypoints, load_coco_keypoints
from clamp.data.dataset import EpochSampler, TopDownDataset, check_images, collate_samples
from clamp.data.decoded_cache import DecodedImageCache
from clamp.data.splits import SPLIT_MODES, SplitError, SplitManifest, apply_split, build_split
from clamp.data.transforms import TopDownTransform, normalize_uint8_images
from clamp.errors import ClampError, MissingFileError, did_you_mean
from clamp.files import MAX_IMAGE_PIXELS
from clamp.keypoints import get_keypoint_spec
from clamp.lightning.checkpointing import training_position
from clamp.synthetic import SYNTHETIC_CONTRIBUTOR, ensure_synthetic
from clamp.synthetic.datasets import synthetic_command

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
# Lightning's warning on a mid-epoch resume when the DataLoader has no state_dict (ours is the data module's).
_NOT_RESUMABLE = r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader"
_LIGHTNING_STAGES = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class MissingDataError(MissingFileError):
    """A dataset file the run needs is not on disk; the message says how to provide it."""


class EmptyDatasetError(ClampError):
    """A training or evaluation set has no usable instance."""


class PoseDataModule(L.LightningDataModule):
    """Builds train/val/test :class:`TopDownDataset` s for one dataset, split and input geometry.

    ``splits`` maps each stage to ``{"ann": file, "images": folder}`` relative to ``root``.
    ``split`` is the split config (``mode`` plus the fields :data:`clamp.data.splits.SPLIT_MODES`
    gives it); the manifest is written to ``manifest_path`` and selects every stage's instances.
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
        coarse_size: tuple[int, int] | None,
        batch_size: int,
        num_workers: int = 4,
        sigma: float = 2.0,
        coarse_target: str = "official",
        augmentation: Mapping[str, Any] | None = None,
        seed: int = 0,
        manifest_path: str | None = None,
        generate: Mapping[str, Any] | None = None,
        eval_batch_size: int | None = None,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        max_bad_fraction: float = 0.01,
        reduced_decode: bool = False,
        uint8_images: bool = False,
        decoded_cache: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = get_keypoint_spec(keypoints)
        self.root = Path(root)
        self.codec = HeatmapCodec(input_size, heatmap_size, sigma, coarse_size, coarse_target)
        self.data: dict[str, CocoKeypoints] = {}
        self.datasets: dict[str, TopDownDataset] = {}
        self.manifest: SplitManifest | None = None
        self._resume: tuple[int, int] | None = None  # (epoch, batches consumed) of a mid-epoch checkpoint

    # ---- paths ----------------------------------------------------------------------------
    def annotation_path(self, stage: str) -> Path:
        return self.root / self.hparams.splits[stage]["ann"]

    def image_root(self, stage: str) -> Path:
        return self.root / self.hparams.splits[stage]["images"]

    @property
    def writes_dataset(self) -> bool:
        """Whether this module generates its (synthetic) dataset when missing; see :func:`writes_dataset`."""
        return writes_dataset(self.root, self.hparams.generate)

    def check_files(self, stages: tuple[str, ...] = STAGES) -> None:
        """Fail fast, before any model or worker starts, when a dataset file is missing."""
        if not self.writes_dataset:
            check_dataset_files(self.spec.name, self.root, self.hparams.splits, stages, synthetic=self.hparams.generate)

    # ---- Lightning hooks ------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.writes_dataset:
            generate = dict(self.hparams.generate)
            generate.pop("out")
            ensure_synthetic(self.root, **generate)

    def setup(self, stage: str | None = None) -> None:
        stages = _LIGHTNING_STAGES.get(stage or "", STAGES)
        if self.manifest is None:
            self.check_files()
            self.manifest = self._build_manifest()
        for name in stages:
            if name not in self.datasets:
                self.datasets[name] = self._dataset(name)

    def _load(self, stage: str) -> CocoKeypoints:
        # val and test usually share one file (AP-10K's val-split1): read it once.
        path, images = self.annotation_path(stage), self.image_root(stage)
        for loaded in self.data.values():
            if loaded.path == path and loaded.image_root == images:
                return loaded
        return load_coco_keypoints(path, self.spec, image_root=images)

    def _build_manifest(self) -> SplitManifest:
        for name in STAGES:
            self.data[name] = self._load(name)
        cfg = dict(self.hparams.split)
        mode = cfg.pop("mode")
        if mode not in SPLIT_MODES:
            raise SplitError(
                f"split.mode={mode!r}{did_you_mean(str(mode), SPLIT_MODES)}: choose one of {list(SPLIT_MODES)}"
            )
        unknown = sorted(set(cfg) - set(SPLIT_MODES[mode]))
        if unknown:
            raise SplitError(
                f"split mode '{mode}' takes {list(SPLIT_MODES[mode]) or 'no options'}; unknown option(s) {unknown}"
            )
        manifest = build_split(
            self.data["train"], mode, evaluation={"val": self.data["val"], "test": self.data["test"]}, **cfg
        )
        for name in STAGES:
            if not manifest.parts[name].instance_ids:
                raise EmptyDatasetError(
                    f"the {name} set is empty: {self.annotation_path(name)} has no usable instance for split "
                    f"mode '{mode}' ({manifest.summary().splitlines()[0]}); check the file and the split options"
                )
        if self.hparams.manifest_path and (self.trainer is None or self.trainer.is_global_zero):
            manifest.write(self.hparams.manifest_path)
        summary = manifest.summary()
        counts = ", ".join(f"{name} {len(part.instance_ids)}" for name, part in manifest.parts.items())
        log.info("split %s: %s instances", summary.splitlines()[0], counts)
        log.debug("split %s", summary.replace("\n", "\n  "))
        return manifest

    def stage_data(self, stage: str) -> CocoKeypoints:
        """The annotations a stage uses, as the split manifest selects them."""
        return apply_split(self.data[stage], self.manifest, stage)

    def _dataset(self, stage: str) -> TopDownDataset:
        aug = dict(self.hparams.augmentation or {})
        center_jitter_prob = aug.pop("center_jitter_prob", 0.0)
        training = stage == "train"
        data = self.stage_data(stage)
        check_images(data, self.hparams.max_image_pixels, stage)
        transform = TopDownTransform(
            self.spec,
            input_size=tuple(self.hparams.input_size),
            training=training,
            uint8_output=self.hparams.uint8_images,
            **(aug if training else {}),
        )
        return TopDownDataset(
            data,
            transform,
            self.codec,
            seed=self.hparams.seed,
            center_jitter_prob=center_jitter_prob if training else 0.0,
            max_image_pixels=self.hparams.max_image_pixels,
            # Evaluation always decodes whole images: the protocol's pixels, whatever training used.
            reduced_decode=training and self.hparams.reduced_decode,
            decoded_cache=DecodedImageCache(self.hparams.decoded_cache)
            if training and self.hparams.decoded_cache
            else None,
        )

    def ground_truth(self, stage: str) -> dict[str, Any]:
        """COCO ground truth of ``stage`` as the official evaluator scores it: the annotation file's own
        records of the evaluated images, ignored ones included (:meth:`CocoKeypoints.ground_truth`)."""
        if self.manifest is None:
            self.setup({"val": "validate", "test": "test"}[stage])
        part = self.manifest.parts[stage]
        return self.data[stage].ground_truth(part.image_ids, part.category_ids)

    def provenance(self) -> dict[str, Any]:
        """What the model is trained on, for the checkpoint's record (synthetic data flags a demo model)."""
        train = self.data.get("train")
        info = train.raw.get("info") if train is not None and isinstance(train.raw.get("info"), dict) else {}
        return {
            "dataset": self.spec.name,
            "synthetic_data": info.get("contributor") == SYNTHETIC_CONTRIBUTOR,
            "annotation_files": {stage: Path(files["ann"]).name for stage, files in self.hparams.splits.items()},
            "split_mode": self.manifest.mode if self.manifest is not None else None,
        }

    def bad_sample_limit(self, stage: str) -> int:
        """How many undecodable samples ``stage`` may skip before the run stops (at least one)."""
        dataset = self.datasets.get(stage)
        return max(1, math.floor(self.hparams.max_bad_fraction * (len(dataset) if dataset is not None else 0)))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return normalize_uint8_batch(batch)

    # ---- exact resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where training stands in its epoch, so that a resumed run skips exactly the consumed batches.

        The data module carries this, not a stateful DataLoader: Lightning restores a loader's state only
        when it builds the loader after the restore, and the scheduler's ``estimated_stepping_batches``
        builds it before; the data module's state is restored first.
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        epoch, batches = training_position(trainer)
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))
            if self._resume[1]:
                # Lightning looks for that state on the DataLoader only, and would call this exact resume
                # (bit-identical to a straight run, tests/test_survival.py) "unreliable".
                warnings.filterwarnings("ignore", message=_NOT_RESUMABLE, category=PossibleUserWarning)

    # ---- loaders --------------------------------------------------------------------------
    def per_device_batch_size(self, batch_size: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if batch_size % world:
            raise ClampError(
                f"data.batch_size={batch_size} (the global batch) is not divisible by the "
                f"{world} training processes; pick a multiple of {world}"
            )
        return batch_size // world

    def _loader(self, stage: str, batch_size: int) -> DataLoader:
        dataset = self.datasets[stage]
        training = stage == "train"
        trainer = self.trainer
        sampler = EpochSampler(
            len(dataset),
            shuffle=training,
            seed=self.hparams.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        per_device = self.per_device_batch_size(batch_size)
        if training and self._resume is not None:
            # Lightning creates the resumed epoch's iterator before it sets the sampler's epoch.
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
            drop_last=training and len(dataset) > batch_size,
            num_workers=workers,
            worker_init_fn=init_loader_worker if workers > 0 else None,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: creating iterators must not draw from the global stream the model uses.
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size or self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size or self.hparams.batch_size)


def normalize_uint8_batch(batch: Any) -> Any:
    """``data.uint8_images``: a batch's uint8 crops normalised on the device they were moved to (the data
    module's ``on_after_batch_transfer``); float batches pass unchanged."""
    images = batch.get("image") if isinstance(batch, dict) else None
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        batch["image"] = normalize_uint8_images(images)
    return batch


def init_loader_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker for every library that keeps a pool.

    PyTorch already runs a worker on one thread; OpenCV's pool (warpAffine, decoding) would otherwise
    start one thread per core in every worker (mmengine's ``setup_multi_processes`` does the same).
    """
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def writes_dataset(root: str | Path, generate: Mapping[str, Any] | None) -> bool:
    """Whether a data module of ``root`` and ``generate`` may write its dataset: only when ``generate`` (the
    keyword arguments of :func:`clamp.synthetic.ensure_synthetic` plus ``out``, the one folder they may
    write) names ``root`` itself. Evaluation passes no ``generate``; a ``data.root`` moved elsewhere is read."""
    if generate is None:
        return False
    if generate.get("out") is None:
        raise ClampError(
            "data.generate has no 'out': name the one folder a synthetic dataset may be written to "
            "(data.generate.out=DIR; data.root follows it in the synthetic configs)"
        )
    return Path(generate["out"]).resolve() == Path(root).resolve()


def check_dataset_files(
    dataset: str,
    root: str | Path,
    splits: Mapping[str, Mapping[str, str]],
    stages: tuple[str, ...] = STAGES,
    synthetic: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`MissingDataError` naming the first missing annotation file or image folder.

    ``synthetic`` (a ``generate`` block, e.g. the one a checkpoint of synthetic data recorded) makes the
    message give the ``python -m clamp.synthetic`` command that writes that dataset there."""
    root = Path(root)
    for stage in stages:
        files = ((root / splits[stage]["ann"], "annotation file"), (root / splits[stage]["images"], "image folder"))
        for path, what in files:
            if not path.exists():
                if synthetic is not None:
                    todo = (
                        f"A folder you name is read, never written: `{synthetic_command(root, **synthetic)}` "
                        "writes this synthetic dataset there, or point data.root at a copy."
                    )
                else:
                    todo = (
                        f"Put the dataset under data.root={root} (README, 'Datasets'), or point data.root / "
                        f"paths.data_dir at your copy. To try everything offline instead: "
                        f"python -m clamp.train +experiment=demo"
                    )
                raise MissingDataError(f"{dataset} {stage} {what} not found: {path}. {todo}")
