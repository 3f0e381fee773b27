"""Inference on your own images, from a checkpoint or an exported model folder, without Lightning or Hydra.

::

    predictor = clamp.Predictor.from_checkpoint("outputs/.../checkpoints/best-epoch209.ckpt")
    animals = predictor.predict("cat.jpg")                 # whole image = one animal
    animals = predictor.predict(image, boxes=[[x, y, w, h], ...])
    animals[0].keypoints  # (K, 3): x, y, score in image pixels; animals[0].named() -> {name: (x, y, score)}

The preprocessing is the evaluation's: each box is padded by 1.25 and made to the model's aspect
ratio, cut out and resized with one affine warp, normalised; the heatmaps (with flip test) are
decoded by the same codec as in evaluation, and the instance score is the official rescoring.

Everything needed comes from the file: the network's recipe, the keypoint spec and the
preprocessing. A model trained on synthetic data or from random CLIP weights is a demo model
(:attr:`Predictor.demo_reason`): it cannot find keypoints on real photos.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clamp.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    build_model,
    checkpoint_record,
    model_state_dict,
    read_checkpoint,
)
from clamp.codec import decode_keypoints
from clamp.data.transforms import BOX_PADDING, IMAGENET_MEAN, IMAGENET_STD, TopDownTransform, box_to_center_scale
from clamp.errors import ClampError
from clamp.evaluation.decode import flip_test
from clamp.evaluation.postprocess import KEYPOINT_SCORE_THRESHOLD, rescore
from clamp.files import MAX_IMAGE_PIXELS, read_image_rgb, read_json
from clamp.keypoints import KeypointSpec

#: Files of an exported model folder (``python -m clamp.export format=safetensors``).
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_RECORD = "clamp_model.json"

ImageInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class AnimalPose:
    """One predicted animal: its box, (K, 3) keypoints (x, y, score in image pixels) and instance score."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float
    keypoint_names: tuple[str, ...]

    def named(self) -> dict[str, tuple[float, float, float]]:
        """``{keypoint name: (x, y, score)}``."""
        return {name: (float(x), float(y), float(s)) for name, (x, y, s) in zip(self.keypoint_names, self.keypoints)}

    def to_dict(self) -> dict[str, Any]:
        """JSON form: box, score and each named keypoint as ``[x, y, score]`` (rounded)."""
        keypoints = {name: [round(x, 2), round(y, 2), round(s, 4)] for name, (x, y, s) in self.named().items()}
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4), "keypoints": keypoints}


def demo_reason(provenance: Mapping[str, Any]) -> str | None:
    """Why a model is only a demo (synthetic training data, random backbone weights), or None."""
    reasons = []
    if provenance.get("synthetic_data"):
        reasons.append("trained on synthetic data")
    if provenance.get("pretrained") is None:
        reasons.append("started from random backbone weights")
    return " and ".join(reasons) or None


class Predictor:
    """Keypoints of animals in images with a trained pose model (module docstring).

    Args:
        model: the network (``clamp.create_model`` / ``clamp.load_model``); ``.model`` afterwards.
        provenance: where its training started from and ran on (from the checkpoint's record).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        flip_test: average with the mirrored image's heatmaps (official test protocol).
        batch_size: crops per forward pass.
    """

    def __init__(self, model: torch.nn.Module, *, provenance: Mapping[str, Any] | None = None,
                 device: str | torch.device | None = None, flip_test: bool = True, shift_heatmap: bool = True,
                 score_threshold: float = KEYPOINT_SCORE_THRESHOLD, batch_size: int = 16,
                 max_image_pixels: int = MAX_IMAGE_PIXELS) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.provenance = dict(provenance or {})
        self.flip_test = flip_test
        self.shift_heatmap = shift_heatmap
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.max_image_pixels = max_image_pixels
        self.transform = TopDownTransform(self.keypoint_spec, input_size=tuple(model.input_size), training=False)

    @property
    def keypoint_spec(self) -> KeypointSpec:
        return self.model.keypoint_spec

    @property
    def demo_reason(self) -> str | None:
        """Why this is only a demo model, or None (see :func:`demo_reason`)."""
        return demo_reason(self.provenance)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        flip_test: bool = True, **kwargs: Any) -> Predictor:
        """A predictor for a training checkpoint (read safely; no backbone weight file needed)."""
        checkpoint = read_checkpoint(path)
        record = checkpoint_record(checkpoint, path)
        _check_preprocessing(record, path)
        model = build_model(record, model_state_dict(checkpoint, path), path)
        return cls(model, provenance=record["provenance"], device=device, flip_test=flip_test, **kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device | None = None,
                        flip_test: bool = True, **kwargs: Any) -> Predictor:
        """A predictor for an exported model folder: ``model.safetensors`` + ``clamp_model.json``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        record = read_json(folder / EXPORT_RECORD, "exported model record", max_bytes=16 << 20)
        if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{folder / EXPORT_RECORD} is not a CLAMP model record (format {FORMAT_VERSION})")
        record = checkpoint_record({"clamp": record}, folder / EXPORT_RECORD)
        _check_preprocessing(record, folder)
        weights_path = folder / EXPORT_WEIGHTS
        if not weights_path.is_file():
            raise CheckpointError(f"exported model folder {folder} has no {EXPORT_WEIGHTS}")
        try:
            weights = load_file(str(weights_path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {weights_path}: {err}") from None
        model = build_model(record, weights, weights_path)
        return cls(model, provenance=record["provenance"], device=device, flip_test=flip_test, **kwargs)

    # ---- inference --------------------------------------------------------------------------
    def read_image(self, image: ImageInput) -> np.ndarray:
        """An (H, W, 3) uint8 RGB array from a path (any format Pillow reads) or an array."""
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ClampError(f"expected an (H, W, 3) RGB image array, got shape {image.shape}")
            return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8, copy=False)
        return read_image_rgb(image, self.max_image_pixels)

    def heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """Keypoint heatmaps of normalised crops (B, 3, H, W), flip-averaged when flip test is on."""
        with torch.inference_mode():
            crops = crops.to(self.device)
            if self.flip_test:
                return flip_test(lambda x: self.model(x).heatmaps, crops, self.keypoint_spec.flip_index,
                                 shift=self.shift_heatmap).float()
            return self.model(crops).heatmaps.float()

    def predict(self, image: ImageInput, boxes: Sequence[Sequence[float]] | None = None) -> list[AnimalPose]:
        """The animals in ``image``: one per box ``[x, y, w, h]`` (default: the whole image is one)."""
        return self.predict_many([image], [boxes])[0]

    def predict_many(self, images: Sequence[ImageInput],
                     boxes: Sequence[Sequence[Sequence[float]] | None] | None = None) -> list[list[AnimalPose]]:
        """:meth:`predict` for several images, their crops batched together."""
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        if len(boxes) != len(images):
            raise ClampError(f"predict_many: {len(images)} images but {len(boxes)} box lists")
        crops, meta = [], []
        aspect = self.model.input_size[0] / self.model.input_size[1]
        empty_keypoints = np.zeros((self.keypoint_spec.num_keypoints, 3), np.float32)
        for index, (image, image_boxes) in enumerate(zip(images, boxes)):
            rgb = self.read_image(image)
            height, width = rgb.shape[:2]
            for box in image_boxes if image_boxes is not None else [[0.0, 0.0, float(width), float(height)]]:
                box = check_box(box, width, height)
                center, scale = box_to_center_scale(box, aspect)
                crops.append(self.transform(rgb, empty_keypoints, center, scale).image)
                meta.append((index, box, center, scale))
        results: list[list[AnimalPose]] = [[] for _ in images]
        for start in range(0, len(crops), self.batch_size):
            chunk = meta[start:start + self.batch_size]
            heatmaps = self.heatmaps(torch.stack(crops[start:start + self.batch_size])).cpu().numpy()
            centers = np.stack([c for _, _, c, _ in chunk])
            scales = np.stack([s for _, _, _, s in chunk])
            keypoints = np.asarray(decode_keypoints(heatmaps, centers, scales))
            scores = rescore(keypoints[..., 2], np.ones(len(chunk)), self.score_threshold)
            for (index, box, _, _), kpts, score in zip(chunk, keypoints, scores):
                results[index].append(AnimalPose(tuple(box), kpts, float(score), self.keypoint_spec.keypoint_names))
        return results

    def describe(self) -> dict[str, Any]:
        """The model's name, keypoints and demo status, for output files."""
        config = getattr(self.model, "config", None) or {}
        return {"name": config.get("name"), "keypoints": self.keypoint_spec.name,
                "input_size": list(self.model.input_size), "demo": self.demo_reason is not None,
                "demo_reason": self.demo_reason, "pretrained": self.provenance.get("pretrained")}


def check_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """A box ``[x, y, w, h]`` as floats, checked: four finite numbers, positive size, overlapping the image."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ClampError(f"box {box!r} must be four numbers [x, y, w, h]") from None
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ClampError(f"box {box!r} must be four finite numbers [x, y, w, h]")
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise ClampError(f"box {box!r} has a non-positive width or height")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ClampError(f"box {box!r} lies outside the {width}x{height} image")
    return values


def _check_preprocessing(record: Mapping[str, Any], source: Any) -> None:
    pre = record["preprocessing"]
    expected = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "box_padding": BOX_PADDING}
    different = {k: pre.get(k) for k, v in expected.items() if pre.get(k) != v}
    if different:
        raise CheckpointError(f"{source}: preprocessing {different} is not the one this clamp version applies "
                              f"({expected}); use the clamp version that wrote it")


def write_export(folder: str | os.PathLike, model: torch.nn.Module, record: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights as safetensors and its record as JSON into ``folder`` (model-zoo form)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / EXPORT_WEIGHTS), metadata={"format": "pt", "clamp_format": str(FORMAT_VERSION)})
    (folder / EXPORT_RECORD).write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    return folder
