"""Top-down keypoint dataset: one sample per annotated instance (mmpose 0.x ``TopDown*Dataset``).

Each item loads the instance's image, cuts the crop with a :class:`~clamp.data.transforms.TopDownTransform`
and encodes the targets with the :class:`~clamp.codec.HeatmapCodec`. The sample dict (keys, shapes and
dtypes fixed by the project contract)::

    image           float32 (3, H, W)   RGB, ImageNet-normalised
    heatmap         float32 (K, Hh, Wh) target_weight   float32 (K,)  official MSRA target and weight
    coarse_heatmap  float32 (K, hc, wc) coarse_weight   float32 (K,)  feature-grid target (CLAMP models)
    keypoints       float32 (K, 3)      input-crop pixels after augmentation, v kept
    center, scale   float32 (2,)        rotation        float32 ()
    image_id, instance_id, category_id  int64 ()
    area            float32 ()          bbox_score      float32 () (1.0: GT boxes)

Indexing: ``dataset[(epoch, i)]`` (what :class:`EpochSampler` yields) draws the augmentation of sample
``i`` from a generator seeded with ``(seed, epoch, i)``, so a sample is the same whatever DataLoader
worker makes it and whether the run was resumed: training is reproducible bit for bit. A plain
``dataset[i]`` draws from the transform's own generator instead.

An image that cannot be decoded (truncated, corrupt) does not stop the run: the item is the marker
``{"skipped": "<path>: <reason>"}``, which :func:`collate_samples` removes from the batch and lists
under ``batch["skipped"]`` for the training module to count (it stops the run beyond a set share).
Missing files, non-images and sizes that disagree with the annotation file are found before
training starts, by :func:`check_images`.

Training centre jitter (official code, mmpose 0.x ``_xywh2cs``): with probability
``center_jitter_prob`` (0.3) a training box centre is shifted by ``U(-0.2, 0.2) * (w, h)``. As in the
official code it is drawn ONCE, when the dataset is built (from ``seed``), and stays fixed for the
whole run; it is never applied with an evaluation transform.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler, Subset, default_collate

from clamp.codec import HeatmapCodec
from clamp.data.coco import CocoKeypoints, Instance
from clamp.data.decoded_cache import DecodedImageCache
from clamp.data.transforms import TopDownTransform, box_to_center_scale
from clamp.errors import ClampError
from clamp.files import MAX_IMAGE_PIXELS, ImageError, image_size, read_image_rgb, read_image_rgb_reduced

logger = logging.getLogger(__name__)

# ``(epoch, index, draw)``: the ``draw``-th time sample ``index`` is drawn in ``epoch`` (a sampler that
# repeats samples, :class:`clamp.data.multi.RatioSampler`); draw 0 is the same as ``(epoch, index)``.
SampleKey = int | tuple[int, int] | tuple[int, int, int]


class DatasetImageError(ClampError):
    """Images of a dataset are missing, unreadable or not the size the annotation file says."""


class TopDownDataset(Dataset):
    """Crops and targets for every usable instance of a :class:`~clamp.data.coco.CocoKeypoints` set.

    ``codec`` gives the input, heatmap and coarse-grid geometry (its input size must be the
    transform's). ``seed`` fixes the build-time centre jitter and the per-sample augmentation streams
    (and reseeds ``transform``); ``max_image_pixels`` caps the decoded image size.

    ``reduced_decode``: draw the crop first, then decode a JPEG at the smallest size (1/2, 1/4, 1/8)
    that still gives the crop at least its output resolution
    (:meth:`~clamp.data.transforms.TopDownTransform.max_reduction`): the same augmentation draws and
    keypoints, pixels resampled from the DCT-scaled image (README, differences). Off: bit-identical
    to decoding every image whole.

    ``decoded_cache``: each image decoded once, the first time a sample needs it, and read from the
    cache afterwards (:mod:`clamp.data.decoded_cache`): bit-identical to the uncached path; with
    ``reduced_decode``, at the reduction every crop of the image allows, so never fewer pixels than
    ``reduced_decode`` alone gives a crop.
    """

    def __init__(
        self,
        data: CocoKeypoints,
        transform: TopDownTransform,
        codec: HeatmapCodec,
        seed: int | None = None,
        center_jitter_prob: float = 0.3,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        reduced_decode: bool = False,
        decoded_cache: DecodedImageCache | None = None,
    ) -> None:
        if transform.spec.num_keypoints != data.spec.num_keypoints:
            raise ValueError(
                f"TopDownDataset: transform keypoint spec '{transform.spec.name}' has "
                f"{transform.spec.num_keypoints} keypoints but {data.path} uses '{data.spec.name}' with "
                f"{data.spec.num_keypoints}; build the transform with the dataset's spec"
            )
        if tuple(codec.input_size) != tuple(transform.input_size):
            raise ValueError(
                f"TopDownDataset: codec input size {codec.input_size} differs from the transform's "
                f"{transform.input_size}"
            )
        if not 0.0 <= center_jitter_prob <= 1.0:
            raise ValueError(f"TopDownDataset: center_jitter_prob={center_jitter_prob} must be in [0, 1]")
        self.data = data
        self.transform = transform
        self.codec = codec
        self.seed = seed
        self.max_image_pixels = max_image_pixels
        self.reduced_decode = reduced_decode
        self.center_jitter_prob = center_jitter_prob if transform.training else 0.0
        # A stream distinct from the augmentation's (which is seeded with ``seed`` itself).
        jitter_rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.centers, self.scales = self._crop_boxes(jitter_rng)
        self.decoded_cache = decoded_cache
        self.image_reductions: dict[int, int] = {}
        if decoded_cache is not None and reduced_decode:
            for inst, scale in zip(self.data.instances, self.scales):
                smallest = transform.smallest_reduction(inst.keypoints, scale)
                self.image_reductions[inst.image_id] = min(self.image_reductions.get(inst.image_id, smallest), smallest)
        if seed is not None:
            transform.set_seed(seed)

    def _crop_boxes(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) centres and scales of every instance's padded box, with the one-off training jitter."""
        centers = np.zeros((len(self.data.instances), 2), dtype=np.float32)
        scales = np.zeros_like(centers)
        for i, inst in enumerate(self.data.instances):
            centers[i], scales[i] = box_to_center_scale(inst.bbox, self.transform.aspect_ratio)
            if rng.random() < self.center_jitter_prob:
                centers[i] += 0.4 * (rng.random(2) - 0.5) * np.asarray(inst.bbox[2:], dtype=np.float64)
        return centers, scales

    def __len__(self) -> int:
        return len(self.data.instances)

    def _augmentation_rng(self, key: SampleKey) -> tuple[int, np.random.Generator | None]:
        if isinstance(key, tuple):
            epoch, index, *draw = key
            seed = None if self.seed is None else [self.seed, 2, epoch, index, *[d for d in draw if d]]
            return index, np.random.default_rng(seed)
        return key, None

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        index, rng = self._augmentation_rng(key)
        inst: Instance = self.data.instances[index]
        path = self.data.image_path(inst.image_id)
        center, scale = self.centers[index], self.scales[index]
        # The annotation's width is the decoded one (check_images compared them at setup).
        width = self.data.images[inst.image_id].width
        try:
            if self.reduced_decode:
                plan = self.transform.plan(width, inst.keypoints, center, scale, rng)
                if self.decoded_cache is not None:
                    # The image's own reduction, which every crop of it allows (at most this crop's).
                    reduction = self.image_reductions[inst.image_id]
                    image, factor = self.decoded_cache.read(
                        path, reduction, width, lambda: read_image_rgb_reduced(path, self.max_image_pixels, reduction)
                    )
                else:
                    reduction = self.transform.max_reduction(plan)
                    image, factor = read_image_rgb_reduced(path, self.max_image_pixels, reduction)
            elif self.decoded_cache is not None:
                image, _ = self.decoded_cache.read(
                    path, 1, width, lambda: (read_image_rgb(path, self.max_image_pixels), 1)
                )
            else:
                image = read_image_rgb(path, self.max_image_pixels)
        except (ImageError, FileNotFoundError) as err:  # a file removed since setup is skipped too
            return {"skipped": str(err)}
        if self.reduced_decode:
            out = self.transform.apply(image, plan, rng, reduction=factor)
        else:
            out = self.transform(image, inst.keypoints, center, scale, rng)
        targets = self.codec.encode(out.keypoints)
        sample = {"image": out.image, **{name: torch.from_numpy(t) for name, t in targets.items()}}
        sample.update(
            {
                "keypoints": torch.from_numpy(out.keypoints),
                "center": torch.from_numpy(out.center),
                "scale": torch.from_numpy(out.scale),
                "rotation": torch.tensor(out.rotation, dtype=torch.float32),
                "image_id": torch.tensor(inst.image_id, dtype=torch.int64),
                "instance_id": torch.tensor(inst.id, dtype=torch.int64),
                "category_id": torch.tensor(inst.category_id, dtype=torch.int64),
                "area": torch.tensor(inst.area, dtype=torch.float32),
                "bbox_score": torch.tensor(1.0, dtype=torch.float32),
            }
        )
        return sample


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` of the decodable samples; the others' reasons go to ``batch["skipped"]``.

    A batch whose every sample was skipped is ``{"skipped": [...]}`` alone (no ``image``).
    """
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    kept = [s for s in samples if "skipped" not in s]
    batch = default_collate(kept) if kept else {}
    batch["skipped"] = skipped
    return batch


def check_images(data: CocoKeypoints, max_image_pixels: int = MAX_IMAGE_PIXELS, stage: str = "") -> None:
    """Fail fast, before training, on images that are missing, not images, over the pixel cap, or not
    the ``width`` x ``height`` the annotation file gives (only their headers are read)."""
    problems: list[str] = []
    image_ids = sorted({inst.image_id for inst in data.instances})
    for image_id in image_ids:
        record = data.images[image_id]
        path = data.image_path(image_id)
        try:
            size = image_size(path, max_image_pixels)
        except (ImageError, FileNotFoundError) as err:
            problems.append(str(err))
            continue
        if size != (record.width, record.height):
            problems.append(
                f"{path} is {size[0]}x{size[1]} but {data.path.name} gives {record.width}x"
                f"{record.height} for image id {image_id}"
            )
    if problems:
        shown = "; ".join(problems[:5])
        more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DatasetImageError(
            f"{len(problems)} of the {len(image_ids)} {stage + ' ' if stage else ''}images of {data.path} "
            f"cannot be used (image root {data.image_root}): {shown}{more}. "
            "Fix or restore these files, point data.root at the complete dataset, or remove their "
            "annotations."
        )


class EpochSampler(Sampler):
    """Sample keys ``(epoch, index)`` in a seeded per-epoch order, sharded over DDP ranks, resumable.

    ``shuffle``: a permutation drawn from ``(seed, epoch)``; else the dataset order. With
    ``num_replicas`` > 1 each rank takes every ``num_replicas``-th key of the order padded by repeats to
    a multiple of ``num_replicas`` (as ``DistributedSampler``; the metric drops the repeats).
    :meth:`resume` skips the keys of an epoch that were consumed before a checkpoint, so that a resumed
    run sees exactly the keys the interrupted one would have; ``len`` stays the full epoch's.
    """

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, keys to skip in it)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """Skip the first ``consumed`` keys of ``epoch`` on this rank (the next iteration only)."""
        self._skip = (epoch, consumed)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.num_replicas)

    def order(self) -> np.ndarray:
        """This epoch's keys of all ranks before sharding: (N,) indices, or (N, 2) indices and draws."""
        if self.shuffle:
            return np.random.default_rng([self.seed, 3, self.epoch]).permutation(self.num_samples)
        return np.arange(self.num_samples)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        order = self.order()
        padded = len(self) * self.num_replicas
        if padded > len(order) and len(order):
            order = np.resize(order, (padded, *order.shape[1:]))
        keys = order[self.rank :: self.num_replicas]
        skip, self._skip = self._skip, None
        if skip is not None and skip[0] == self.epoch:
            keys = keys[skip[1] :]
        if keys.ndim == 2:
            return iter([(self.epoch, int(index), int(draw)) for index, draw in keys])
        return iter([(self.epoch, int(index)) for index in keys])


def _top_down_datasets(dataset: Dataset) -> list[TopDownDataset]:
    """The TopDownDatasets inside ``dataset`` (itself, or wrapped in Subset / ConcatDataset)."""
    if isinstance(dataset, TopDownDataset):
        return [dataset]
    if isinstance(dataset, Subset):
        return _top_down_datasets(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [d for part in dataset.datasets for d in _top_down_datasets(part)]
    if isinstance(getattr(dataset, "dataset", None), Dataset):  # a view of one dataset, as Subset is
        return _top_down_datasets(dataset.dataset)
    return []


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` for plain integer indexing: reseed each transform per worker.

    Only ``dataset[i]`` draws from the transform's own generator; without this every worker starts
    from a copy of the same state and all workers draw identical augmentations. ``(epoch, i)`` keys
    (:class:`EpochSampler`) need no reseeding.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        raise RuntimeError("worker_init_fn is meant for DataLoader(worker_init_fn=...), not the main process")
    datasets = _top_down_datasets(info.dataset)
    if not datasets:
        raise TypeError(
            f"worker_init_fn: found no TopDownDataset in {type(info.dataset).__name__} (worker {worker_id}); "
            "use it with a TopDownDataset, or a Subset / ConcatDataset of them"
        )
    for i, ds in enumerate(datasets):
        ds.transform.set_seed(int(np.random.SeedSequence([info.seed, i]).generate_state(1)[0]))
