"""Top-down keypoint dataset: one sample per annotated instance (mmpose 0.x ``TopDown*Dataset``).

Each item loads the instance's image, cuts the crop with a :class:`~clamp.data.transforms.TopDownTransform`
and builds the two Gaussian targets (pose heatmap and coarse feature-grid target). The sample dict
(keys, shapes and dtypes fixed by the project contract)::

    image           float32 (3, H, W)   RGB, ImageNet-normalised
    heatmap         float32 (K, Hh, Wh) target_weight   float32 (K,)  labelled and Gaussian touches the map
    coarse_heatmap  float32 (K, hc, wc) coarse_weight   float32 (K,)  labelled and peak cell on the grid
    keypoints       float32 (K, 3)      input-crop pixels after augmentation, v kept
    center, scale   float32 (2,)        rotation        float32 ()
    image_id, instance_id, category_id  int64 ()
    area            float32 ()          bbox_score      float32 () (1.0: GT boxes)

Training centre jitter (official code, mmpose 0.x ``_xywh2cs``): with probability
``center_jitter_prob`` (0.3) a training box centre is shifted by ``U(-0.2, 0.2) * (w, h)``. As in the
official code it is drawn ONCE, when the dataset is built (from ``seed``), and stays fixed for the
whole run; it is never applied with an evaluation transform.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from clamp.data.coco import CocoKeypoints, Instance
from clamp.data.targets import grid_sigma, keypoint_targets
from clamp.data.transforms import TopDownTransform, box_to_center_scale

logger = logging.getLogger(__name__)


def _check_size(name: str, size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or min(int(v) for v in size) <= 0:
        raise ValueError(f"TopDownDataset: {name}={tuple(size)} must be a positive (width, height) pair")
    return int(size[0]), int(size[1])


class TopDownDataset(Dataset):
    """Crops and targets for every usable instance of a :class:`~clamp.data.coco.CocoKeypoints` set.

    ``heatmap_size`` / ``coarse_size`` are (W, H) grids; the coarse sigma is ``sigma`` scaled by the
    grid ratio (:func:`clamp.data.targets.grid_sigma`: 0.5 for 64 -> 16). ``seed`` fixes the
    build-time centre jitter and, when given, reseeds ``transform`` so that the same seed reproduces
    the same samples in the main process; DataLoader workers need :func:`worker_init_fn`.
    """

    def __init__(
        self,
        data: CocoKeypoints,
        transform: TopDownTransform,
        heatmap_size: tuple[int, int] = (64, 64),
        sigma: float = 2.0,
        coarse_size: tuple[int, int] = (16, 16),
        seed: int | None = None,
        center_jitter_prob: float = 0.3,
    ) -> None:
        if transform.spec.num_keypoints != data.spec.num_keypoints:
            raise ValueError(
                f"TopDownDataset: transform keypoint spec '{transform.spec.name}' has "
                f"{transform.spec.num_keypoints} keypoints but {data.path} uses '{data.spec.name}' with "
                f"{data.spec.num_keypoints}; "
                "build the transform with the dataset's spec"
            )
        if not 0.0 <= center_jitter_prob <= 1.0:
            raise ValueError(f"TopDownDataset: center_jitter_prob={center_jitter_prob} must be in [0, 1]")
        if sigma <= 0:
            raise ValueError(f"TopDownDataset: sigma={sigma} must be positive")
        self.data = data
        self.transform = transform
        self.heatmap_size = _check_size("heatmap_size", heatmap_size)
        self.coarse_size = _check_size("coarse_size", coarse_size)
        if self.heatmap_size[0] * self.coarse_size[1] != self.heatmap_size[1] * self.coarse_size[0]:
            raise ValueError(
                f"TopDownDataset: coarse_size={self.coarse_size} must have the aspect ratio of "
                f"heatmap_size={self.heatmap_size} (one coarse sigma for both axes)"
            )
        self.sigma = float(sigma)
        self.coarse_sigma = grid_sigma(sigma, self.heatmap_size, self.coarse_size)
        self.center_jitter_prob = center_jitter_prob if transform.training else 0.0
        # A stream distinct from the transform's (which is seeded with ``seed`` itself).
        jitter_rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.centers, self.scales = self._crop_boxes(jitter_rng)
        if seed is not None:
            transform.set_seed(seed)
        if not data.instances:
            logger.warning("TopDownDataset: %s has no usable instances", data.path)

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

    def _read_image(self, inst: Instance) -> np.ndarray:
        path = self.data.image_path(inst.image_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"image file not found: {path} (image id {inst.image_id}, instance {inst.id}, "
                f"annotations {self.data.path}); check the image root or pass image_root= to "
                "load_coco_keypoints"
            )
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(
                f"cannot decode image file {path} (image id {inst.image_id}): corrupt or not an image"
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> dict[str, Any]:
        inst = self.data.instances[index]
        out = self.transform(self._read_image(inst), inst.keypoints, self.centers[index], self.scales[index])
        input_size = self.transform.input_size
        heatmap, weight = keypoint_targets(out.keypoints, input_size, self.heatmap_size, self.sigma)
        coarse, coarse_weight = keypoint_targets(
            out.keypoints, input_size, self.coarse_size, self.coarse_sigma, peak_inside=True
        )
        return {
            "image": out.image,
            "heatmap": torch.from_numpy(heatmap),
            "target_weight": torch.from_numpy(weight),
            "coarse_heatmap": torch.from_numpy(coarse),
            "coarse_weight": torch.from_numpy(coarse_weight),
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


def _top_down_datasets(dataset: Dataset) -> list[TopDownDataset]:
    """The TopDownDatasets inside ``dataset`` (itself, or wrapped in Subset / ConcatDataset)."""
    if isinstance(dataset, TopDownDataset):
        return [dataset]
    if isinstance(dataset, Subset):
        return _top_down_datasets(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [d for part in dataset.datasets for d in _top_down_datasets(part)]
    return []


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed each TopDownDataset's transform from the worker's seed.

    Without it every worker starts from a copy of the same generator state and all workers draw
    identical augmentations. ``get_worker_info().seed`` is ``base_seed + worker_id`` and the
    DataLoader draws a new ``base_seed`` (from torch's RNG) for every epoch's iterator, so workers
    differ from each other and epochs differ, reproducibly under ``torch.manual_seed``.
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
