"""CLIP weight files: read their tensors safely and load them into an open_clip model.

Formats: OpenAI's TorchScript releases (``RN50.pt``, ``ViT-B-16.pt``, ``ViT-L-14.pt``), a plain state dict
(``.pt``/``.pth``/``.bin``), a ``{"state_dict": ...}`` checkpoint (``module.`` prefixes are stripped) or a
``.safetensors`` file. ``torch.save(model.state_dict(), path)`` round-trips bit-exactly.

Nothing in a weight file runs: state dicts are read with ``torch.load(weights_only=True)``, and a
TorchScript archive is never loaded as a program (``torch.jit.load`` would compile and keep its code):
:func:`read_torchscript_tensors` unpickles only its object tree of module attributes with an unpickler
that knows tensors, storages and plain containers, and refuses any other global (:class:`UnsafeWeightsError`).

Positional tables trained at 224 px are resized to the model's grid exactly as the official CLAMP code
does it: bilinear, ``align_corners=False``, class position kept (RN50 7x7+1 -> 8x8+1 and ViT-B/16
14x14+1 -> 16x16+1 at 256 px). open_clip's loader would resize the ViT table bicubically and cannot resize
RN50's attention-pool table at all.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clamp.errors import ClampError

logger = logging.getLogger(__name__)

# Entries of OpenAI's (TorchScript) state dicts that are model settings, not weights.
_OPENAI_SETTINGS_KEYS = ("input_resolution", "context_length", "vocab_size")


class PretrainedWeightsError(ClampError, RuntimeError):
    """Pretrained weights cannot be found, fetched or loaded; the message says how to supply them."""


class UnsafeWeightsError(PretrainedWeightsError):
    """A weight file that needs more than tensors and plain containers to load (it could run code)."""


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Inert stand-in for a pickled TorchScript module: its attributes land in ``__dict__``, nothing runs."""


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: Tensor, offset: int, size: Any, stride: Any, *args: Any) -> Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _first(value: Any, *args: Any) -> Any:
    """Identity: TorchScript's list builders and type tags, and ``_rebuild_parameter``, return their data."""
    return value


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl``: modules become :class:`_ScriptObject`, storages come from the zip."""

    _SAFE = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _first,
        ("collections", "OrderedDict"): collections.OrderedDict,
        **{
            ("torch.jit._pickle", name): _first
            for name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "restore_type_tag")
        },
    }

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, source: Path) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._SAFE:
            return self._SAFE[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])  # referenced, never called
        if module.startswith("__torch__.") or module == "__torch__":
            return _ScriptObject
        raise UnsafeWeightsError(
            f"refused to read weight file {self.source}: it needs {module}.{name} to load, which could run code; "
            "a CLIP release holds only tensors"
        )

    def persistent_load(self, pid: Any) -> Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeWeightsError(f"refused to read weight file {self.source}: unknown record {pid!r:.80}")
        storage_type, key = pid[1], pid[2]
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
        if dtype is None:
            raise UnsafeWeightsError(f"refused to read weight file {self.source}: unknown storage {storage_type!r}")
        data = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)


def _flatten(obj: Any, prefix: str, out: dict[str, Tensor]) -> None:
    for name, value in vars(obj).items():
        if isinstance(value, Tensor):
            out[prefix + name] = value.clone()
        elif isinstance(value, _ScriptObject):
            _flatten(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a TorchScript archive's modules, by dotted attribute name, without running its code."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise PretrainedWeightsError(f"{path}: a TorchScript archive without data.pkl")
        prefix = pickles[0].split("/")[0]
        with archive.open(pickles[0]) as f:
            root = _TensorsOnlyUnpickler(f, archive, prefix, path).load()
    if not isinstance(root, _ScriptObject):
        raise PretrainedWeightsError(f"{path}: the TorchScript archive does not hold a module")
    tensors: dict[str, Tensor] = {}
    _flatten(root, "", tensors)
    return tensors


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives (OpenAI's CLIP releases) are zip files holding ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read weights from a TorchScript archive, a (wrapped) state dict or a safetensors file.

    ``{"state_dict": ...}`` wrappers are unwrapped, a DataParallel ``module.`` prefix is stripped and
    OpenAI's settings entries (``input_resolution``, ``context_length``, ``vocab_size``) are dropped.
    TorchScript archives are read by :func:`read_torchscript_tensors`; all other files with
    ``weights_only=True``. Neither runs code from the file.

    Raises:
        PretrainedWeightsError: the file is missing, unreadable, or holds no tensor dict.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"weight file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint: Any = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            checkpoint = read_torchscript_tensors(path)
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except UnsafeWeightsError:
        raise
    except Exception as exc:
        raise PretrainedWeightsError(
            f"cannot read weight file {path}: {exc}. Expected a TorchScript CLIP release, a torch.save'd "
            "state dict (optionally under 'state_dict') or a .safetensors file."
        ) from exc
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if (
        not isinstance(checkpoint, dict)
        or not checkpoint
        or not all(isinstance(v, Tensor) for v in checkpoint.values())
    ):
        raise PretrainedWeightsError(
            f"weight file {path} holds {type(checkpoint).__name__}, not a non-empty dict of tensors "
            "(a state dict, or a checkpoint with one under 'state_dict')"
        )
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module.") :]: v for k, v in checkpoint.items()}
    return {k: v for k, v in checkpoint.items() if k not in _OPENAI_SETTINGS_KEYS}


def resize_grid_embedding(table: Tensor, grid: tuple[int, int], prefix: int = 1) -> Tensor:
    """Resize a ``(prefix + h*w, C)`` positional table (class/register positions first) to ``grid`` = (h', w').

    The square source grid is interpolated bilinearly with ``align_corners=False`` (as the official
    CLAMP/DenseCLIP code does); the ``prefix`` leading positions (the class position for CLIP) are kept
    unchanged. Computed in fp32, returned in the input dtype.
    """
    tokens = table.shape[0] - prefix
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"positional table with {tokens} grid rows is not a square grid")
    if (side, side) == tuple(grid):
        return table
    prefix_pos, spatial = table[:prefix], table[prefix:].float()
    spatial = spatial.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=tuple(grid), mode="bilinear", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(table.dtype)
    return torch.cat([prefix_pos, spatial], dim=0)


_TIMM_POS_EMBED = "visual.trunk.pos_embed"


def resize_clip_positional_embeddings(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Resize the vision positional tables of ``state_dict`` to ``model``'s grid (new dict returned).

    Handles ``visual.attnpool.positional_embedding`` (ModifiedResNet), ``visual.positional_embedding``
    (VisionTransformer) and ``visual.trunk.pos_embed`` (timm ViT trunks: ``(1, prefix + h*w, C)``, the
    class and register positions kept); used for every checkpoint format, TorchScript included.
    """
    resized = dict(state_dict)
    targets = {
        name: param
        for name, param in model.state_dict().items()
        if name in ("visual.attnpool.positional_embedding", "visual.positional_embedding", _TIMM_POS_EMBED)
    }
    for name, target in targets.items():
        table = resized.get(name)
        if table is None or table.shape == target.shape:
            continue
        timm_table = name == _TIMM_POS_EMBED
        if timm_table and table.ndim == 3 and table.shape[0] == 1:
            table = table[0]
        target_2d = target[0] if timm_table else target
        if table.ndim != 2 or table.shape[1] != target_2d.shape[1]:
            raise PretrainedWeightsError(
                f"{name}: checkpoint shape {tuple(resized[name].shape)} does not fit the model's {tuple(target.shape)}"
            )
        if timm_table:
            trunk = model.visual.trunk
            prefix = 0 if getattr(trunk, "no_embed_class", False) else int(trunk.num_prefix_tokens)
            grid = tuple(trunk.patch_embed.grid_size)
        else:  # ViT: the model's patch grid; attention pool: its square table.
            prefix = 1
            grid = tuple(getattr(model.visual, "grid_size", (math.isqrt(target.shape[0] - 1),) * 2))
        try:
            new = resize_grid_embedding(table, grid, prefix)
        except ValueError as exc:
            raise PretrainedWeightsError(f"{name}: cannot resize the checkpoint table: {exc}") from exc
        resized[name] = new[None] if timm_table else new
        logger.info("resized %s from %d to %d positions", name, table.shape[0], new.shape[0])
    return resized


def load_clip_state_dict(model: nn.Module, state_dict: dict[str, Tensor], *, source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, after resizing positional tables to its grid.

    Non-persistent buffers of ``model`` (e.g. the text ``attn_mask``, saved by TorchScript archives) are
    ignored. A ``CLIP``-layout state dict (text tower at the top level) is moved under ``text.`` for a
    ``CustomTextCLIP`` model, as open_clip's own loader does. ``source`` names the file for error messages.

    Raises:
        PretrainedWeightsError: keys or shapes do not match ``model``.
    """
    if isinstance(model, open_clip.CustomTextCLIP) and "text_projection" in state_dict:
        from open_clip.model import convert_to_custom_text_state_dict

        state_dict = convert_to_custom_text_state_dict(state_dict)
    persistent = set(model.state_dict())
    transient = {name for name, _ in model.named_buffers()} - persistent
    state_dict = {k: v for k, v in state_dict.items() if k not in transient}
    state_dict = resize_clip_positional_embeddings(state_dict, model)
    missing = sorted(persistent - set(state_dict))
    unexpected = sorted(set(state_dict) - persistent)
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"weights from {source} do not fit the model: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}. Is the file for another architecture?"
        )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise PretrainedWeightsError(f"weights from {source} do not fit the model: {exc}") from exc
