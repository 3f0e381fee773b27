"""Inference on your own images, from a checkpoint, an exported model (a folder, or ``hf-hub:ORG/NAME`` on
the Hugging Face Hub) or an ONNX file, without Lightning or Hydra.

::

    predictor = clamp.Predictor.from_checkpoint("outputs/.../checkpoints/best-epoch209.ckpt")
    animals = predictor.predict("cat.jpg")                 # whole image = one animal; boxes=[]: none
    animals = predictor.predict(image, boxes=[[x, y, w, h], ...])
    animals[0].keypoints  # (K, 3): x, y, score in image pixels; animals[0].named() -> {name: (x, y, score)}
    drawing = predictor.draw(image, animals)               # side colours; a banner for demo models

The preprocessing is the evaluation's: each box is clipped to the image as the evaluation clips
its boxes (mmpose 0.x, :func:`clamp.data.coco.clip_boxes_to_image`; the whole image ``[0, 0, W, H]``
becomes ``[0, 0, W - 1, H - 1]``), padded by 1.25 and made to the model's aspect ratio, cut out and
resized with one affine warp, normalised; the heatmaps (with flip test) are decoded by the same
codec as in evaluation, and the instance score is the official rescoring. The decoded keypoints are
then clipped to the image, ``[0, W - 1] x [0, H - 1]``: none lies outside it, whatever the box. An
image or box that keeps less than 2 pixels of width or height inside the image (a 1x1 image) is
refused with a :class:`ClampError` naming its size. Crops of several images are batched together
(:meth:`Predictor.predict_many`).

CLAMP models also give their per-keypoint score maps S (the paper's Fig. 4):
``predictor.predict(image, score_maps=True)`` keeps them with the crop they cover on each
:class:`AnimalPose`, and :meth:`Predictor.draw_score_maps` lays them over it.

:meth:`Predictor.from_onnx` runs a file written by ``python -m clamp.export format=onnx`` with
onnxruntime: the same preprocessing and decoding, the flip test by running the mirrored crops too.

Everything needed comes from the file: the network's recipe, the keypoint spec and the
preprocessing. A model trained on synthetic data or from random CLIP weights is a demo model
(:attr:`Predictor.demo_reason`): it cannot find keypoints on real photos.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from clamp.checkpoint import (
    EXPORT_RECORD,
    EXPORT_WEIGHTS,
    FORMAT_VERSION,
    CheckpointError,
    build_model,
    checkpoint_record,
    model_state_dict,
    read_checkpoint,
)
from clamp.codec import decode_keypoints
from clamp.data.coco import clip_boxes_to_image
from clamp.data.transforms import BOX_PADDING, IMAGENET_MEAN, IMAGENET_STD, TopDownTransform, box_to_center_scale
from clamp.errors import ClampError, MissingFileError
from clamp.evaluation.decode import flip_back_heatmaps
from clamp.evaluation.postprocess import KEYPOINT_SCORE_THRESHOLD, rescore
from clamp.files import MAX_IMAGE_PIXELS, give_default_mode, read_image_rgb, read_json
from clamp.keypoints import KeypointSpec

if TYPE_CHECKING:
    from clamp.onnx_export import OnnxPoseModel

ImageInput = str | os.PathLike | np.ndarray
Box = Sequence[float]


@dataclass(frozen=True)
class AnimalPose:
    """One predicted animal: its box (as given), (K, 3) keypoints (x, y, score in image pixels, inside
    the image) and instance score.

    With ``predict(..., score_maps=True)`` (CLAMP models) also ``score_maps`` (K, h, w), the raw
    cosine score maps S of the model's input crop, and ``crop``, that crop as uint8 RGB (H, W, 3).
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float
    keypoint_names: tuple[str, ...]
    score_maps: np.ndarray | None = field(default=None, repr=False, compare=False)
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    def named(self) -> dict[str, tuple[float, float, float]]:
        """``{keypoint name: (x, y, score)}``."""
        return {name: (float(x), float(y), float(s)) for name, (x, y, s) in zip(self.keypoint_names, self.keypoints)}

    def to_dict(self) -> dict[str, Any]:
        """JSON form: box, score and each named keypoint as ``[x, y, score]`` (rounded)."""
        keypoints = {name: [round(x, 2), round(y, 2), round(s, 4)] for name, (x, y, s) in self.named().items()}
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4), "keypoints": keypoints}


@dataclass(frozen=True)
class NamedScoreMaps:
    """Score maps of keypoints named at test time (:meth:`Predictor.locate`) for one animal.

    ``score_maps`` (M, h, w) are the raw cosine maps S (Eq. 3-4) of ``keypoint_names`` on the model's
    feature grid over ``crop``; ``peaks`` (M, 3) is each map's peak as x, y in image pixels and its
    cosine; ``stand_in`` the trained keypoint each name took the place of in the prompt set;
    ``cell_px`` the (x, y) size of one grid cell in image pixels: the peaks' resolution.
    """

    box: tuple[float, float, float, float]
    keypoint_names: tuple[str, ...]
    score_maps: np.ndarray = field(repr=False, compare=False)
    peaks: np.ndarray
    stand_in: tuple[str, ...]
    cell_px: tuple[float, float]
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: box, grid cell size and per name the peak ``[x, y, cosine]`` and its stand-in."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "grid_cell_px": [round(v, 2) for v in self.cell_px],
            "keypoints": {
                name: {"peak": [round(float(x), 2), round(float(y), 2), round(float(v), 4)], "stands_in_for": trained}
                for name, (x, y, v), trained in zip(self.keypoint_names, self.peaks, self.stand_in)
            },
        }


#: What the output of :meth:`Predictor.locate` says about its precision (README "Keypoints named at test time").
COARSE_MAPS_NOTE = (
    "named keypoints come from the score maps on the model's feature grid (one peak per grid cell, "
    "see grid_cell_px), not from the trained heatmap head: coarse locations"
)


def demo_reason(provenance: Mapping[str, Any]) -> str | None:
    """Why a model is only a demo (synthetic training data, random backbone weights), or None.

    A record without a ``pretrained`` entry (a model handed over without its checkpoint record, an
    ONNX file exported without provenance) is not known to be a demo and is not flagged.
    """
    reasons = []
    if provenance.get("synthetic_data"):
        reasons.append("trained on synthetic data")
    if "pretrained" in provenance and provenance["pretrained"] is None:
        reasons.append("started from random backbone weights")
    return " and ".join(reasons) or None


def demo_caption(provenance: Mapping[str, Any], model_name: str | None = None) -> str | None:
    """The banner drawn on a demo model's pictures, e.g. ``"DEMO MODEL: synthetic data, random CLIP weights
    - not real keypoints"`` (``model_name`` tells a CLIP backbone from an ImageNet one)."""
    if demo_reason(provenance) is None:
        return None
    parts = []
    if provenance.get("synthetic_data"):
        parts.append("synthetic data")
    if "pretrained" in provenance and provenance["pretrained"] is None:
        parts.append("random backbone weights" if "imagenet" in (model_name or "") else "random CLIP weights")
    return "DEMO MODEL: " + ", ".join(parts) + " - not real keypoints"


class _Crop(NamedTuple):
    index: int  # of the image in the call
    box: list[float]  # as given; the crop is cut from it clipped to the image
    size: tuple[int, int]  # of the image: (width, height)
    center: np.ndarray
    scale: np.ndarray
    image: torch.Tensor  # (3, H, W) normalised


class Predictor:
    """Keypoints of animals in images with a trained pose model (module docstring).

    Args:
        model: the network (``clamp.create_model`` / ``clamp.load_model``), or an
            :class:`~clamp.onnx_export.OnnxPoseModel`; ``.model`` afterwards.
        provenance: where its training started from and ran on (from the checkpoint's record);
            None: unknown (not flagged as a demo).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available); for an ONNX model the
            execution provider is chosen by :meth:`from_onnx`.
        flip_test: average with the mirrored image's heatmaps (official test protocol).
        shift_heatmap: shift the flipped-back heatmaps one pixel (official).
        score_threshold: keypoints above it count in the instance score (official rescoring).
        batch_size: crops per forward pass (crops of several images share a batch).
        max_image_pixels: larger images are refused before decoding (decompression-bomb cap).
    """

    def __init__(
        self,
        model: torch.nn.Module | OnnxPoseModel,
        *,
        provenance: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        flip_test: bool = True,
        shift_heatmap: bool = True,
        score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
        batch_size: int = 16,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        if int(batch_size) < 1:
            raise ClampError(f"batch_size={batch_size} must be at least 1")
        self.is_onnx = not isinstance(model, torch.nn.Module)
        if self.is_onnx:
            self.device = torch.device("cpu")  # where the crops are made; onnxruntime picks its own device
            self.model = model
        else:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model = model.eval().to(self.device)
        self.provenance = dict(provenance or {})
        self.flip_test = flip_test
        self.shift_heatmap = shift_heatmap
        self.score_threshold = score_threshold
        self.batch_size = int(batch_size)
        self.max_image_pixels = max_image_pixels
        self.transform = TopDownTransform(self.keypoint_spec, input_size=tuple(model.input_size), training=False)

    @property
    def keypoint_spec(self) -> KeypointSpec:
        return self.model.keypoint_spec

    @property
    def backend(self) -> str:
        """``"torch"`` or ``"onnx"`` (onnxruntime)."""
        return "onnx" if self.is_onnx else "torch"

    @property
    def demo_reason(self) -> str | None:
        """Why this is only a demo model, or None (see :func:`demo_reason`)."""
        return demo_reason(self.provenance)

    @property
    def demo_caption(self) -> str | None:
        """The banner :meth:`draw` puts on a demo model's drawings, or None (see :func:`demo_caption`)."""
        return demo_caption(self.provenance, self.describe()["name"])

    @property
    def has_score_maps(self) -> bool:
        """Whether ``predict(..., score_maps=True)`` works: a CLAMP model run by PyTorch."""
        return not self.is_onnx and getattr(self.model, "logit_scale", None) is not None

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device | None = None, flip_test: bool = True, **kwargs: Any
    ) -> Predictor:
        """A predictor for a training checkpoint (read safely; no backbone weight file needed)."""
        checkpoint = read_checkpoint(path)
        record = checkpoint_record(checkpoint, path)
        _check_preprocessing(record, path)
        model = build_model(record, model_state_dict(checkpoint, path), path)
        return cls(model, provenance=record["provenance"], device=device, flip_test=flip_test, **kwargs)

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, device: str | torch.device | None = None, flip_test: bool = True, **kwargs: Any
    ) -> Predictor:
        """A predictor for an exported model: a folder (``model.safetensors`` + ``clamp_model.json``), or
        ``"hf-hub:ORG/NAME"`` (``@REVISION`` optional), those two files of a Hugging Face Hub repository
        (:mod:`clamp.model_hub`: nothing else of it is fetched; offline from the cache with ``HF_HUB_OFFLINE=1``)."""
        export = read_export(source)
        model = build_model(export.record, export.weights, export.weights_source)
        return cls(model, provenance=export.record["provenance"], device=device, flip_test=flip_test, **kwargs)

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        flip_test: bool = True,
        providers: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """A predictor running an ONNX file of ``python -m clamp.export format=onnx`` with onnxruntime.

        ``device`` picks the execution provider (``"cpu"``; ``"cuda"`` needs onnxruntime-gpu; default:
        CUDA when onnxruntime has it, else CPU) unless ``providers`` names them.
        """
        from clamp.onnx_export import OnnxPoseModel

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                f"ONNX model not found: {path} (write one with `python -m clamp.export "
                "ckpt=... format=onnx out=model.onnx`)"
            )
        try:
            model = OnnxPoseModel(path, providers=providers or _onnx_providers(device))
        except ImportError as err:
            raise ClampError(str(err)) from None
        except ValueError as err:
            raise CheckpointError(
                f"{err}; ONNX models for clamp are written by `python -m clamp.export ckpt=... format=onnx`"
            ) from None
        info = model.info
        if tuple(info.input_mean) != IMAGENET_MEAN or tuple(info.input_std) != IMAGENET_STD:
            raise CheckpointError(
                f"{path}: input normalisation mean={list(info.input_mean)} "
                f"std={list(info.input_std)} is not the one this clamp version applies"
            )
        return cls(model, provenance=info.provenance, flip_test=flip_test, **kwargs)

    # ---- inference --------------------------------------------------------------------------
    def read_image(self, image: ImageInput) -> np.ndarray:
        """An (H, W, 3) uint8 RGB array from a path (any format Pillow reads) or an array."""
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
                raise ClampError(f"expected an (H, W, 3) RGB image array, got shape {image.shape}")
            return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8, copy=False)
        return read_image_rgb(image, self.max_image_pixels)

    def heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """Keypoint heatmaps of normalised crops (B, 3, H, W), flip-averaged when flip test is on."""
        return torch.from_numpy(self._forward(crops, score_maps=False)[0])

    def _forward(self, crops: torch.Tensor, score_maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, K, Hh, Wh) heatmaps (flip-averaged when on) and, if asked, (B, K, h, w) score maps."""
        flip_index = self.keypoint_spec.flip_index
        if self.is_onnx:
            images = crops.numpy()
            if not self.flip_test:
                return self.model.heatmaps(images), None
            # One run for the crops and their mirrors.
            both = self.model.heatmaps(np.concatenate([images, images[..., ::-1]]))
            heatmaps, mirrored = both[: len(images)], both[len(images) :]
            return (heatmaps + flip_back_heatmaps(mirrored, flip_index, shift=self.shift_heatmap)) * 0.5, None
        with torch.inference_mode():
            images = crops.to(self.device)
            out = self.model(images, return_aux=score_maps)
            heatmaps = out.heatmaps.float()
            if self.flip_test:
                mirrored = self.model(images.flip(-1)).heatmaps
                heatmaps = (heatmaps + flip_back_heatmaps(mirrored, flip_index, shift=self.shift_heatmap)) * 0.5
            maps = out.score_maps.float().cpu().numpy() if score_maps else None
            return heatmaps.cpu().numpy(), maps

    def predict(
        self, image: ImageInput, boxes: Sequence[Box] | None = None, *, score_maps: bool = False
    ) -> list[AnimalPose]:
        """The animals in ``image``: one per box ``[x, y, w, h]`` (default, None: the whole image is one;
        ``[]``: none, as for an image a detector found nothing in).

        ``score_maps=True`` (CLAMP models, PyTorch backend) keeps each animal's score maps and crop.
        """
        return self.predict_many([image], [boxes], score_maps=score_maps)[0]

    def predict_many(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[Box] | None] | None = None,
        *,
        score_maps: bool = False,
    ) -> list[list[AnimalPose]]:
        """:meth:`predict` for several images, their crops batched together (``batch_size`` per forward).

        Images are read one at a time and only their crops are kept, so a long list of paths is fine.
        """
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        if len(boxes) != len(images):
            raise ClampError(f"predict_many: {len(images)} images but {len(boxes)} box lists")
        if score_maps and not self.has_score_maps:
            raise ClampError(self._no_score_maps())
        results: list[list[AnimalPose]] = [[] for _ in images]
        pending: list[_Crop] = []
        for index, (image, image_boxes) in enumerate(zip(images, boxes)):
            pending.extend(self._crops(index, self.read_image(image), image_boxes))
            while len(pending) >= self.batch_size:
                self._run(pending[: self.batch_size], results, score_maps)
                pending = pending[self.batch_size :]
        if pending:
            self._run(pending, results, score_maps)
        return results

    def _crops(self, index: int, rgb: np.ndarray, boxes: Sequence[Box] | None) -> list[_Crop]:
        height, width = rgb.shape[:2]
        check_image_size(width, height)
        aspect = self.model.input_size[0] / self.model.input_size[1]
        empty_keypoints = np.zeros((self.keypoint_spec.num_keypoints, 3), np.float32)
        crops = []
        for box in boxes if boxes is not None else [[0.0, 0.0, float(width), float(height)]]:
            box = check_box(box, width, height)
            center, scale = box_to_center_scale(clip_boxes_to_image(box, width, height), aspect)
            image = self.transform(rgb, empty_keypoints, center, scale).image
            crops.append(_Crop(index, box, (width, height), center, scale, image))
        return crops

    def _run(self, batch: list[_Crop], results: list[list[AnimalPose]], score_maps: bool) -> None:
        heatmaps, maps = self._forward(torch.stack([c.image for c in batch]), score_maps)
        centers = np.stack([c.center for c in batch])
        scales = np.stack([c.scale for c in batch])
        keypoints = np.array(decode_keypoints(heatmaps, centers, scales))
        # A crop reaches past the image (the box padding, a box at the border): no keypoint outside it.
        limits = np.array([c.size for c in batch], dtype=keypoints.dtype)[:, None, :] - 1
        keypoints[..., :2] = np.clip(keypoints[..., :2], 0, limits)
        scores = rescore(keypoints[..., 2], np.ones(len(batch)), self.score_threshold)
        if maps is not None:
            from clamp.visualization import denormalize_image
        for i, (crop, kpts, score) in enumerate(zip(batch, keypoints, scores)):
            extra = {} if maps is None else {"score_maps": maps[i], "crop": denormalize_image(crop.image)}
            results[crop.index].append(
                AnimalPose(tuple(crop.box), kpts, float(score), self.keypoint_spec.keypoint_names, **extra)
            )

    def locate(
        self, image: ImageInput, names: str | Sequence[str], boxes: Sequence[Box] | None = None
    ) -> list[NamedScoreMaps]:
        """Score maps and peaks of keypoints named now, trained or not (``names=["left ear tip"]``).

        One result per box (default: the whole image), from the model's Eq. 3-4 path
        (:meth:`clamp.models.pose_models.CLAMP.named_score_maps`: a new name takes the place of its
        nearest trained keypoint in the prompt set). The peaks are decoded as the heatmaps are (Eq. 1:
        argmax and a quarter-cell step), but on the feature grid (:data:`COARSE_MAPS_NOTE`).
        """
        names = self.check_names(names)
        crops = self._crops(0, self.read_image(image), boxes)
        from clamp.visualization import denormalize_image

        results = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start : start + self.batch_size]
            # no_grad, not inference_mode: the text encoder's cache keys on the new tokens' version counter.
            with torch.no_grad():
                crops_batch = torch.stack([c.image for c in batch]).to(self.device)
                maps, nearest = self.model.named_score_maps(crops_batch, names)
            maps = maps.float().cpu().numpy()
            centers = np.stack([c.center for c in batch])
            scales = np.stack([c.scale for c in batch])
            # +2 keeps every cosine positive, so the decoder's "no positive maximum" rule never applies.
            peaks = np.asarray(decode_keypoints(maps + 2.0, centers, scales))
            peaks[..., 2] -= 2.0
            grid_h, grid_w = maps.shape[-2:]
            stand_in = tuple(self.keypoint_spec.keypoint_names[int(i)] for i in nearest.cpu())
            for crop, crop_maps, crop_peaks in zip(batch, maps, peaks):
                cell = (float(crop.scale[0]) / grid_w, float(crop.scale[1]) / grid_h)
                results.append(
                    NamedScoreMaps(
                        tuple(crop.box),
                        tuple(names),
                        crop_maps,
                        crop_peaks,
                        stand_in,
                        cell,
                        denormalize_image(crop.image),
                    )
                )
        return results

    def check_names(self, names: str | Sequence[str]) -> list[str]:
        """The names :meth:`locate` takes, checked before any image is read: a CLAMP model with text
        prompts run by PyTorch, and names that fit the prompt's token slots (else a :class:`ClampError`)."""
        if not self.has_score_maps or getattr(self.model, "prompt_learner", None) is None:
            raise ClampError(
                "named keypoints need a CLAMP model with text prompts run by PyTorch: "
                + (self._no_score_maps() if not self.has_score_maps else "this one has a learned prompt matrix")
            )
        names = [names] if isinstance(names, str) else list(names)
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ClampError(f"names={names!r}: give one or more keypoint names, e.g. ['left ear tip']")
        from clamp.models.text import tokenize_prompt_words

        names = [n.strip() for n in names]
        try:
            tokenize_prompt_words(names, self.model.prompt_learner.name_tokens.shape[1])
        except ValueError as err:
            raise ClampError(f"names: {err}") from None
        return names

    def _no_score_maps(self) -> str:
        if self.is_onnx:
            return (
                "score maps need the PyTorch model: the ONNX graph outputs heatmaps only "
                "(predict from the checkpoint instead)"
            )
        return f"score maps are CLAMP's; {type(self.model).__name__} has none"

    # ---- drawing ----------------------------------------------------------------------------
    def draw(
        self,
        image: ImageInput,
        animals: Sequence[AnimalPose],
        *,
        show_names: bool = False,
        score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
        caption: str | None = None,
    ) -> np.ndarray:
        """``image`` (RGB) with every animal's skeleton drawn (:func:`clamp.visualization.draw_pose`).

        ``caption`` is a banner across the top; a demo model's drawings get :attr:`demo_caption`
        before it, whatever is passed.
        """
        from clamp.visualization import draw_caption, draw_pose

        drawing = self.read_image(image)
        for animal in animals:
            drawing = draw_pose(
                drawing, animal.keypoints, self.keypoint_spec, score_threshold=score_threshold, show_names=show_names
            )
        banner = " | ".join(text for text in (self.demo_caption, caption) if text)
        return draw_caption(drawing, banner) if banner else np.ascontiguousarray(drawing)

    def draw_score_maps(
        self,
        animals: Sequence[AnimalPose | NamedScoreMaps],
        *,
        panel_size: int = 160,
        value_range: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """The Fig. 4-style overlay: per animal a grid of its keypoints' score maps over its crop, stacked.

        The animals must come from ``predict(..., score_maps=True)`` or :meth:`locate`. A demo model's grid
        gets the banner.
        """
        from clamp.visualization import draw_caption, draw_score_maps

        if not animals:
            raise ClampError("draw_score_maps: no animals to draw")
        grids = []
        for animal in animals:
            if animal.score_maps is None or animal.crop is None:
                raise ClampError("draw_score_maps needs animals predicted with predict(..., score_maps=True)")
            grids.append(
                draw_score_maps(
                    animal.crop,
                    animal.score_maps,
                    animal.keypoint_names,
                    value_range=value_range,
                    panel_size=panel_size,
                )
            )
        width = max(grid.shape[1] for grid in grids)
        gap = np.full((8, width, 3), 255, np.uint8)
        rows = []
        for grid in grids:
            padded = np.full((grid.shape[0], width, 3), 255, np.uint8)
            padded[:, : grid.shape[1]] = grid
            rows.extend([padded, gap])
        stacked = np.concatenate(rows[:-1], axis=0)
        return draw_caption(stacked, self.demo_caption, above=True) if self.demo_caption else stacked

    def describe(self) -> dict[str, Any]:
        """The model's name, keypoints, backend and demo status, for output files."""
        config = (self.model.info.model_config if self.is_onnx else getattr(self.model, "config", None)) or {}
        return {
            "name": config.get("name"),
            "keypoints": self.keypoint_spec.name,
            "backend": self.backend,
            "input_size": list(self.model.input_size),
            "demo": self.demo_reason is not None,
            "demo_reason": self.demo_reason,
            "pretrained": self.provenance.get("pretrained"),
        }


def _onnx_providers(device: str | torch.device | None) -> list[str]:
    """onnxruntime execution providers for a device name (see :meth:`Predictor.from_onnx`)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []  # OnnxPoseModel says how to install it
    available = ort.get_available_providers()
    kind = None if device is None else torch.device(device).type
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ClampError(
                "device=cuda for an ONNX model needs onnxruntime-gpu "
                f"(this onnxruntime has {available}); use device=cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind is not None:
        raise ClampError(f"device={device} is not one onnxruntime runs here: use cpu or cuda")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


#: Images (and boxes, once clipped) need this many pixels of width and height: the evaluation's clipping
#: (:func:`clamp.data.coco.clip_boxes_to_image`) leaves nothing of a 1-pixel-wide one.
MIN_IMAGE_SIDE = 2


def check_image_size(width: int, height: int) -> None:
    """Refuse an image smaller than :data:`MIN_IMAGE_SIDE` pixels a side (a 1x1 picture has no animal to frame)."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ClampError(
            f"the image is {width}x{height} pixels: too small to predict on "
            f"(keypoints need at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels)"
        )


def check_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """A box ``[x, y, w, h]`` as floats, checked: four finite numbers, positive size, overlapping the image
    by at least 2 pixels of width and height once clipped as in evaluation."""
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
    clipped = clip_boxes_to_image(values, width, height)
    if clipped[2] <= 0 or clipped[3] <= 0:
        raise ClampError(
            f"box {box!r} keeps less than {MIN_IMAGE_SIDE} pixels of width or height inside the "
            f"{width}x{height} image once clipped to it (the evaluation drops such boxes)"
        )
    return values


def _check_preprocessing(record: Mapping[str, Any], source: Any) -> None:
    pre = record["preprocessing"]
    expected = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "box_padding": BOX_PADDING}
    different = {k: pre.get(k) for k, v in expected.items() if pre.get(k) != v}
    if different:
        raise CheckpointError(
            f"{source}: preprocessing {different} is not the one this clamp version applies "
            f"({expected}); use the clamp version that wrote it"
        )


class Export(NamedTuple):
    """An exported model's checked record, its weights, and how messages name the weights."""

    record: dict[str, Any]
    weights: dict[str, torch.Tensor]
    weights_source: str


def read_export(source: str | os.PathLike) -> Export:
    """Read and check an exported model: a folder, or ``"hf-hub:ORG/NAME[@REVISION]"`` (:mod:`clamp.model_hub`).

    The record must be a CLAMP model record of this format with this version's preprocessing; a Hub
    model's errors name the repository and the file.
    """
    from clamp.model_hub import HubModelError, hub_export_files, is_hub_id

    if not is_hub_id(source):
        folder = Path(source)
        return _read_export_files(folder / EXPORT_RECORD, folder / EXPORT_WEIGHTS, str(folder / EXPORT_WEIGHTS))
    record_path, weights_path = hub_export_files(str(source))
    try:
        return _read_export_files(record_path, weights_path, f"{source} {EXPORT_WEIGHTS}")
    except ClampError as err:
        raise HubModelError(f"{source}: {err}") from None


def _read_export_files(record_path: Path, weights_path: Path, weights_source: str) -> Export:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    record = read_json(record_path, "exported model record", max_bytes=16 << 20)
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{record_path} is not a CLAMP model record (format {FORMAT_VERSION})")
    record = checkpoint_record({"clamp": record}, record_path)
    _check_preprocessing(record, record_path)
    if not weights_path.is_file():
        raise CheckpointError(f"exported model folder {weights_path.parent} has no {EXPORT_WEIGHTS}")
    try:
        weights = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {weights_path}: {err}") from None
    return Export(record, weights, weights_source)


def write_export(folder: str | os.PathLike, model: torch.nn.Module, record: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights as safetensors and its record as JSON into ``folder`` (model-zoo form)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / EXPORT_WEIGHTS), metadata={"format": "pt", "clamp_format": str(FORMAT_VERSION)})
    give_default_mode(folder / EXPORT_WEIGHTS)  # safetensors writes 0600; the file is meant for sharing
    (folder / EXPORT_RECORD).write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    return folder
