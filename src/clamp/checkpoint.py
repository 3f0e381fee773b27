"""Training checkpoints: read them safely, read the record they carry, rebuild the trained model.

A checkpoint written by ``python -m clamp.train`` is a Lightning checkpoint (weights under
``state_dict`` with a ``model.`` prefix, optimizer and loop states) plus one entry of ours,
``checkpoint["clamp"]`` (:data:`RECORD_KEY`), the single record of what was trained:

* ``model``: the :func:`clamp.create_model` arguments that rebuild the exact architecture (registry
  name, keypoint spec as a dict, every override, and the activation the backbone was built with), as
  open_clip rebuilds a model from the config stored beside its weights;
* ``preprocessing``: input and heatmap size, normalisation and box padding;
* ``provenance``: the backbone weights the training started from and the dataset it ran on.

Checkpoints may come from strangers, so they are read with ``torch.load(weights_only=True)``: only
tensors and plain containers (numbers, strings, lists, dicts) are unpickled, which is all the
project's checkpoints hold. A file that needs anything else (a pickled object that could run code)
is refused with :class:`UnsafeCheckpointError` naming the type, and nothing in it runs.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clamp.errors import ClampError

if TYPE_CHECKING:
    from clamp.models.pose_models import PoseModel

RECORD_KEY = "clamp"
FORMAT_VERSION = 1
#: The files of an exported model (``python -m clamp.export``): the weights and the record as JSON.
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_RECORD = "clamp_model.json"
_HOW_TO_GET_ONE = (
    "CLAMP checkpoints are written by `python -m clamp.train` (checkpoints/last.ckpt, "
    "best-*.ckpt); shareable weights are exported with `python -m clamp.export`"
)


class CheckpointError(ClampError):
    """A checkpoint that is missing, unreadable, of another kind, or does not fit the run."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that needs more than tensors and plain containers to load (it could run code)."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file on the CPU with torch's safe loader; any failure is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (pass ckpt=/path/to/last.ckpt or best-*.ckpt)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the write was interrupted; use another one")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        offending = found.group(1) if found else "an object that is not a tensor or a plain container"
        raise UnsafeCheckpointError(
            f"refused to load checkpoint {path}: it needs {offending} to load, and unpickling that can run "
            f"code. CLAMP checkpoints hold only tensors and plain containers; only load this file with "
            f"torch.load(weights_only=False) if you trust whoever made it"
        ) from None
    except Exception as err:  # torch reports damaged files with many exception types
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated or not a torch checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint. {_HOW_TO_GET_ONE}")
    return checkpoint


def make_record(model: PoseModel, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The ``clamp`` record of a network built by :func:`clamp.create_model` (module docstring)."""
    from clamp.data.transforms import BOX_PADDING, IMAGENET_MEAN, IMAGENET_STD

    if model.config is None:
        raise ValueError("only models built by clamp.create_model carry the recipe a checkpoint needs")
    return {
        "format_version": FORMAT_VERSION,
        "model": dict(model.config),
        "preprocessing": {
            "input_size": list(model.input_size),
            "heatmap_size": list(model.heatmap_size),
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "box_padding": BOX_PADDING,
        },
        "provenance": dict(provenance),
    }


def checkpoint_record(checkpoint: Mapping[str, Any], source: str | os.PathLike = "checkpoint") -> dict[str, Any]:
    """The ``clamp`` record of a loaded checkpoint (module docstring), checked for completeness."""
    if RECORD_KEY not in checkpoint:
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            kind = "only weights (a state dict), without the model recipe needed to rebuild the network"
        elif "state_dict" in checkpoint:
            kind = "a training checkpoint without CLAMP's model record (another project's, or an older format)"
        else:
            kind = f"entries {sorted(map(str, checkpoint))[:6]}, none of them a CLAMP model record"
        raise CheckpointError(f"{source} holds {kind}. {_HOW_TO_GET_ONE}")
    record = checkpoint[RECORD_KEY]
    version = record.get("format_version") if isinstance(record, Mapping) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: CLAMP record format {version!r}, this version reads {FORMAT_VERSION}; "
            "use the clamp version that wrote it"
        )
    for key in ("model", "preprocessing", "provenance"):
        if not isinstance(record.get(key), Mapping):
            raise CheckpointError(f"{source}: the CLAMP record lacks its '{key}' entry; the file is damaged")
    return dict(record)


def model_state_dict(checkpoint: Mapping[str, Any], source: str | os.PathLike = "checkpoint") -> dict[str, Any]:
    """The network's weights of a training checkpoint (its ``state_dict`` without the ``model.`` prefix)."""
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} has no 'state_dict' with the trained weights; the file is damaged")
    return {key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")}


def build_model(record: Mapping[str, Any], weights: Mapping[str, Any], source: str | os.PathLike) -> PoseModel:
    """The network of a record, with ``weights`` loaded strictly (no pretrained backbone file needed)."""
    from clamp.models import create_model

    recipe = dict(record["model"])
    try:
        model = create_model(**recipe, pretrained=None)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{source}: its model recipe cannot be built by this clamp version ({err})") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{source}: its weights do not fit the model its recipe describes ({first})") from None
    return model.eval()


def load_model(source: str | os.PathLike | Mapping[str, Any]) -> PoseModel:
    """Rebuild the trained network of a checkpoint (a path, or a checkpoint already read), in eval mode."""
    checkpoint = read_checkpoint(source) if not isinstance(source, Mapping) else source
    name = source if not isinstance(source, Mapping) else "checkpoint"
    return build_model(checkpoint_record(checkpoint, name), model_state_dict(checkpoint, name), name)
