"""ONNX export of a pose model's image branch, and an onnxruntime runner that needs only the file.

The exported graph maps ``images`` (B, 3, H, W) float32, ImageNet-normalised, at the model's input
size, to ``heatmaps`` (B, K, Hh, Wh), with a dynamic batch size. CLAMP's text side (prompt learner,
frozen text encoder, prompt encoder) does not depend on the image, so it is computed once in eval
mode and stored in the graph as a constant; the context decoder, which mixes in the image, stays in
the graph. The spatial head only serves a training loss and is not exported.

The file's metadata holds what a runner needs (keypoint spec, input and heatmap size, input
normalisation, model class and, when set, the ``create_model`` recipe and the training provenance
that tells a demo model), read back by :class:`OnnxPoseModel`. Export needs torch's exporter
(``onnxscript``, which brings ``onnx``); running needs ``onnxruntime`` only. Both: ``pip install 'clamp-pose[onnx]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clamp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from clamp.keypoints import KeypointSpec
from clamp.models.pose_models import CLAMP, PoseModel

INSTALL_HINT = "pip install 'clamp-pose[onnx]'"
INPUT_NAME = "images"
OUTPUT_NAME = "heatmaps"
_METADATA_KEYS = ("model_class", "keypoint_spec", "input_size", "heatmap_size", "input_mean", "input_std")
_CONFIG_KEY = "model_config"
_PROVENANCE_KEY = "provenance"
_METADATA_PREFIX = "clamp."


def _import_optional(module: str, needed_for: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{needed_for} needs the '{module}' package: {INSTALL_HINT}") from error


@dataclass(frozen=True)
class OnnxModelInfo:
    """What an exported file records about its model (``input_size`` and ``heatmap_size`` are (W, H))."""

    model_class: str
    keypoint_spec: KeypointSpec
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    input_mean: tuple[float, float, float]
    input_std: tuple[float, float, float]
    model_config: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None

    @classmethod
    def from_model(cls, model: PoseModel, provenance: Mapping[str, Any] | None = None) -> OnnxModelInfo:
        """The info of ``model``; ``provenance`` is the checkpoint record's (what training started from)."""
        return cls(
            model_class=type(model).__name__,
            keypoint_spec=model.keypoint_spec,
            input_size=tuple(model.input_size),
            heatmap_size=tuple(model.heatmap_size),
            input_mean=IMAGENET_MEAN,
            input_std=IMAGENET_STD,
            model_config=model.config,
            provenance=None if provenance is None else dict(provenance),
        )

    def to_metadata(self) -> dict[str, str]:
        """``clamp.*`` keys with JSON values, for the ONNX model's ``metadata_props``."""
        values = {
            "model_class": self.model_class,
            "keypoint_spec": self.keypoint_spec.to_dict(),
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
            "input_mean": list(self.input_mean),
            "input_std": list(self.input_std),
        }
        if self.model_config is not None:
            values[_CONFIG_KEY] = self.model_config
        if self.provenance is not None:
            values[_PROVENANCE_KEY] = self.provenance
        return {_METADATA_PREFIX + key: json.dumps(value) for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str | Path) -> OnnxModelInfo:
        """Parse :meth:`to_metadata`'s keys; ``source`` names the file in the error when they are missing."""
        missing = [key for key in _METADATA_KEYS if _METADATA_PREFIX + key not in metadata]
        if missing:
            raise ValueError(
                f"{source} lacks the metadata {[_METADATA_PREFIX + k for k in missing]}; "
                "export it with clamp.onnx_export.export_onnx"
            )
        values = {key: json.loads(metadata[_METADATA_PREFIX + key]) for key in _METADATA_KEYS}
        config = metadata.get(_METADATA_PREFIX + _CONFIG_KEY)
        provenance = metadata.get(_METADATA_PREFIX + _PROVENANCE_KEY)
        return cls(
            model_class=values["model_class"],
            keypoint_spec=KeypointSpec.from_dict(values["keypoint_spec"]),
            input_size=tuple(values["input_size"]),
            heatmap_size=tuple(values["heatmap_size"]),
            input_mean=tuple(values["input_mean"]),
            input_std=tuple(values["input_std"]),
            model_config=None if config is None else json.loads(config),
            provenance=None if provenance is None else json.loads(provenance),
        )


class _ImageBranch(nn.Module):
    """images -> heatmaps of ``model``; for CLAMP also holds E_prompt^origin, computed once, as a buffer."""

    def __init__(self, model: PoseModel) -> None:
        super().__init__()
        self.model = model
        prompts = None
        if isinstance(model, CLAMP):
            with torch.no_grad():
                prompts = model.initial_prompt_embeddings().detach().clone()
        self.register_buffer("prompt_embeddings", prompts)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).heatmaps


@contextlib.contextmanager
def _baked_prompts(branch: _ImageBranch) -> Iterator[None]:
    """Make CLAMP's forward read the stored prompt embeddings instead of running the text side."""
    if branch.prompt_embeddings is None:
        yield
        return
    # An instance attribute shadows the method while tracing; deleting it restores the method.
    branch.model.initial_prompt_embeddings = lambda: branch.prompt_embeddings
    try:
        yield
    finally:
        del branch.model.initial_prompt_embeddings


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """The ONNX optimiser logs routine warnings (ops it does not constant-fold) and notes (initialisers
    it merges, nodes it removes) to the console; only errors are worth showing."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(
    model: PoseModel, path: str | Path, *, opset_version: int | None = None, provenance: Mapping[str, Any] | None = None
) -> Path:
    """Export ``model``'s image branch to ``path`` (see the module docstring); returns the path.

    The model is exported in eval mode and left in the mode it had. ``opset_version`` defaults to
    torch's exporter default. ``provenance`` (a checkpoint record's) is stored in the metadata so
    that a runner can tell a demo model (synthetic data, random backbone weights).
    """
    _import_optional("onnxscript", "ONNX export")
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        branch = _ImageBranch(model).eval()
        width, height = model.input_size
        device = next(model.parameters()).device
        # Batch 2: an example batch of 1 would let the exporter fix the batch size at 1.
        example = torch.zeros(2, 3, height, width, device=device)
        with _baked_prompts(branch), _exporter_quiet():
            program = torch.onnx.export(
                branch,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
                opset_version=opset_version,
                dynamo=True,
                verbose=False,
            )
        program.model.metadata_props.update(OnnxModelInfo.from_model(model, provenance).to_metadata())
        program.save(str(path))
    finally:
        model.train(was_training)
    return path


class OnnxPoseModel:
    """An exported pose model run by onnxruntime: ``heatmaps(images)`` plus the file's metadata.

    ``keypoint_spec``, ``input_size`` and ``heatmap_size`` match the attributes of the PyTorch models;
    ``info`` has the rest (normalisation, model class, ``create_model`` recipe). ``providers`` are
    onnxruntime execution providers, default all available (CUDA first with onnxruntime-gpu).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None) -> None:
        ort = _import_optional("onnxruntime", "Running an ONNX model")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        try:
            self.session = ort.InferenceSession(
                str(self.path), providers=list(providers or ort.get_available_providers())
            )
        except Exception as err:  # onnxruntime reports unreadable files with its own exception types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"cannot load {self.path} as an ONNX model ({first})") from None
        self.info = OnnxModelInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)

    @property
    def keypoint_spec(self) -> KeypointSpec:
        return self.info.keypoint_spec

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input_size

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.info.heatmap_size

    def heatmaps(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) ImageNet-normalised images at ``input_size`` -> (B, K, Hh, Wh) float32 heatmaps."""
        width, height = self.input_size
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (3, height, width):
            raise ValueError(f"{self.path.name} expects images of shape (B, 3, {height}, {width}), got {images.shape}")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
