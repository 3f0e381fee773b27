"""Build an open_clip ``CLIP`` model and load CLIP weights into it, offline-safe.

``load_open_clip(arch, pretrained, image_size=...)`` is the one way the project makes a CLIP model:

* ``arch``: an open_clip config name (``"RN50"``, ``"ViT-B-16"``, ``"ViT-L-14"``; ``"ViT-B/16"`` is
  accepted too) or one of the tiny random-weight configs of this module (``"tiny-rn"``, ``"tiny-vit"``),
  used by the tests and the offline demo.
* ``pretrained``: ``None`` (random init), an open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``, ...),
  or a local file: OpenAI's TorchScript release (``RN50.pt``, ``ViT-B-16.pt``, ``ViT-L-14.pt``), a plain
  state dict (``.pt``/``.pth``/``.bin``), a ``{"state_dict": ...}`` checkpoint (``module.`` prefixes are
  stripped) or a ``.safetensors`` file. ``torch.save(model.state_dict(), path)`` round-trips bit-exactly.

The model is ``open_clip.CLIP(**config)`` with open_clip's own config for ``arch`` at ``image_size``
(what ``open_clip.create_model(arch, force_image_size=image_size)`` builds, without its weight loading and
its "initialized randomly" warning). The checkpoint is loaded by this module so that CLIP's positional
tables trained at 224 px are resized to the new grid exactly as the official CLAMP code does it: bilinear,
``align_corners=False``, class position kept (RN50 7x7+1 -> 8x8+1 and ViT-B/16 14x14+1 -> 16x16+1 at
256 px). open_clip's loader would resize the ViT table bicubically and cannot resize RN50's attention-pool
table at all.

Tags never wait on a network: the local caches (Hugging Face hub cache, ``~/.cache/clip``) are looked up
first; when the file is not there, ``HF_HUB_OFFLINE=1`` or a failed 3-second probe of the download host
(HTTP HEAD) raises :class:`PretrainedWeightsError` at once, instead of huggingface_hub's ~46 s of retries.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clamp.errors import ClampError

logger = logging.getLogger(__name__)

__all__ = [
    "PretrainedWeightsError",
    "TINY_CONFIGS",
    "load_open_clip",
    "read_state_dict",
    "load_clip_state_dict",
    "resize_clip_positional_embeddings",
    "resize_grid_embedding",
    "network_reachable",
    "offline_mode",
]


class PretrainedWeightsError(ClampError, RuntimeError):
    """Pretrained weights cannot be found, fetched or loaded; the message says how to supply them."""


_TINY_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}

#: Small random-weight CLIP configs (same module types as the real ones) for tests and the offline demo.
#: The text tower keeps CLIP's real tokenizer vocabulary and context length, so prompts tokenise as usual.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-rn": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 64, "patch_size": None},
        "text_cfg": _TINY_TEXT_CFG,
    },
    "tiny-vit": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {"layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": _TINY_TEXT_CFG,
    },
}

# OpenAI's release file names, for the error message that tells a user what to download.
_OPENAI_FILES = {"RN50": "RN50.pt", "ViT-B-16": "ViT-B-16.pt", "ViT-L-14": "ViT-L-14.pt"}
_STATE_DICT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}
# Entries of OpenAI's (TorchScript) state dicts that are model settings, not weights.
_OPENAI_SETTINGS_KEYS = ("input_resolution", "context_length", "vocab_size")
_PROBE_TIMEOUT_S = 3.0


def load_open_clip(arch: str, pretrained: str | os.PathLike | None, *, image_size: int,
                   **cfg_overrides: Any) -> open_clip.CLIP:
    """Create an open_clip ``CLIP`` at ``image_size`` and load ``pretrained`` weights into it.

    Args:
        arch: open_clip config name or a name in :data:`TINY_CONFIGS`.
        pretrained: ``None``, an open_clip tag for ``arch``, or a path to a weight file (see module doc).
        image_size: square input size in pixels; must be a multiple of the vision tower's stride
            (32 for ModifiedResNet, the patch size for a ViT).
        **cfg_overrides: top-level config keys (``embed_dim``, ``quick_gelu``, ...); ``vision_cfg`` and
            ``text_cfg`` dicts are merged into the base config rather than replacing it.
            ``quick_gelu`` defaults to the tag's setting, else ``True`` (OpenAI CLIP and CLAMP use
            QuickGELU).

    Returns:
        The model in train mode, fp32, on the CPU.

    Raises:
        ValueError: unknown ``arch``, unsupported config, or ``image_size`` not a multiple of the stride.
        PretrainedWeightsError: the weights cannot be found, fetched offline or loaded into ``arch``.
    """
    arch = arch.replace("/", "-")
    cfg = _model_config(arch, image_size, cfg_overrides)
    checkpoint, tag_quick_gelu = (None, None) if pretrained is None else _resolve_pretrained(arch, pretrained)
    if "quick_gelu" not in cfg_overrides:
        cfg["quick_gelu"] = tag_quick_gelu if tag_quick_gelu is not None else cfg.get("quick_gelu", True)
    # Read the file before building the model so that a bad file fails before a slow build.
    state_dict = None if checkpoint is None else read_state_dict(checkpoint)
    model = open_clip.CLIP(**cfg)
    if state_dict is not None:
        load_clip_state_dict(model, state_dict, source=f"{checkpoint} (arch {arch})")
        logger.info("loaded CLIP weights for %s at %d px from %s", arch, image_size, checkpoint)
    else:
        logger.debug("built %s at %d px with random weights", arch, image_size)
    return model


def _model_config(arch: str, image_size: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """The CLIP constructor kwargs for ``arch`` with ``overrides`` merged and ``image_size`` forced."""
    if arch in TINY_CONFIGS:
        cfg = copy.deepcopy(TINY_CONFIGS[arch])
    else:
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise ValueError(
                f"unknown CLIP arch {arch!r}: use an open_clip config name (e.g. 'RN50', 'ViT-B-16', "
                f"'ViT-L-14'; see open_clip.list_models()) or one of {sorted(TINY_CONFIGS)}")
    overrides = dict(overrides)
    for tower in ("vision_cfg", "text_cfg"):
        cfg[tower] = {**cfg[tower], **overrides.pop(tower, {})}
    cfg.update(overrides)
    unsupported = [k for k in ("custom_text", "multimodal_cfg") if cfg.get(k)]
    unsupported += [k for k in ("timm_model_name",) if cfg["vision_cfg"].get(k)]
    unsupported += [k for k in ("hf_model_name",) if cfg["text_cfg"].get(k)]
    if unsupported:
        raise ValueError(f"CLIP arch {arch!r} uses {unsupported}: only configs with open_clip's own "
                         "ModifiedResNet / VisionTransformer and text transformer are supported")
    vision = cfg["vision_cfg"]
    stride = vision.get("patch_size") or 32
    if not isinstance(image_size, int) or image_size <= 0 or image_size % stride:
        raise ValueError(f"image_size={image_size!r} for {arch}: must be a positive multiple of the "
                         f"vision stride {stride}")
    vision["image_size"] = image_size
    return cfg


def _resolve_pretrained(arch: str, pretrained: str | os.PathLike) -> tuple[Path, bool | None]:
    """Local checkpoint path for ``pretrained`` (file or tag) and the tag's quick_gelu (None for files)."""
    path = Path(os.path.expanduser(str(pretrained)))
    if path.is_file():
        return path, None
    text = str(pretrained)
    if path.suffix in _STATE_DICT_SUFFIXES or os.sep in text or "/" in text:
        raise PretrainedWeightsError(
            f"pretrained weight file {text!r} for arch {arch!r} does not exist. Pass an existing file "
            f"(e.g. OpenAI's {_OPENAI_FILES.get(arch, 'RN50.pt')}), an open_clip tag, or pretrained=null.")
    if arch in TINY_CONFIGS:
        raise PretrainedWeightsError(
            f"{arch!r} is a random-weight test config with no pretrained tags (got {text!r}); "
            "use pretrained=null or a weight file saved from the same config.")
    tag_cfg = open_clip.get_pretrained_cfg(arch, text)
    if not tag_cfg:
        raise PretrainedWeightsError(
            f"pretrained={text!r} is neither an existing file nor an open_clip tag for arch {arch!r}. "
            f"Known tags: {open_clip.list_pretrained_tags_by_model(arch)}; or pass a file path or null.")
    return _fetch_tag(arch, text, tag_cfg), tag_cfg.get("quick_gelu", False)


def _fetch_tag(arch: str, tag: str, tag_cfg: dict[str, Any]) -> Path:
    """The local file of an open_clip tag: from a cache, else downloaded only if the host answers fast."""
    cached = _cached_tag_file(tag_cfg)
    if cached is not None:
        return cached
    hf_hub, url = tag_cfg.get("hf_hub", ""), tag_cfg.get("url", "")
    from huggingface_hub import constants as hf_constants

    host_url = hf_constants.ENDPOINT if hf_hub else url
    if offline_mode():
        status = "the machine is offline (HF_HUB_OFFLINE is set)"
    elif not network_reachable(host_url):
        status = f"the machine is offline ({urlparse(host_url).hostname} cannot be reached)"
    else:
        try:
            return Path(open_clip.download_pretrained(tag_cfg))
        except Exception as exc:  # any download failure gets the same how-to message
            status = f"its download failed ({exc})"
    openai_file = _OPENAI_FILES.get(arch, "RN50.pt")
    openai_url = open_clip.get_pretrained_url(arch, "openai") or "https://github.com/openai/CLIP"
    raise PretrainedWeightsError(
        f"pretrained tag {tag!r} for arch {arch!r} isn't cached and {status}. Either download OpenAI's CLIP "
        f"file on a connected machine (RN50.pt / ViT-B-16.pt / ViT-L-14.pt; for {arch}: {openai_file} from "
        f"{openai_url}) and pass its path as pretrained=/path/to/{openai_file}; or fill the Hugging Face "
        f"cache on a connected machine (python -c \"import open_clip; open_clip.create_model('{arch}', "
        f"pretrained='{tag}')\"), copy it here and set HF_HOME to it; "
        f"or use pretrained=null for random weights.")


def _cached_tag_file(tag_cfg: dict[str, Any]) -> Path | None:
    """The tag's weight file if it is already in the Hugging Face cache or open_clip's URL cache."""
    from huggingface_hub import try_to_load_from_cache

    if tag_cfg.get("file"):
        return Path(tag_cfg["file"])
    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)
        filename = filename or open_clip.constants.HF_WEIGHTS_NAME
        candidates = [filename]
        if filename == open_clip.constants.HF_WEIGHTS_NAME:
            candidates.insert(0, open_clip.constants.HF_SAFE_WEIGHTS_NAME)
        for name in candidates:
            hit = try_to_load_from_cache(repo_id, name)
            if isinstance(hit, str):
                return Path(hit)
    url = tag_cfg.get("url", "")
    if url:
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return target
    return None


def network_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s server answers an HTTP HEAD request (any status) within ``timeout`` seconds.

    Runs in a daemon thread because a hanging DNS lookup ignores socket timeouts.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                result.append(True)
        except urllib.error.HTTPError:  # the server answered, with an error status
            result.append(True)
        except (OSError, ValueError):
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def offline_mode() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read at call time, unlike huggingface_hub's import-time flag)."""
    from huggingface_hub import constants as hf_constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return flag or bool(hf_constants.HF_HUB_OFFLINE)


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
    TorchScript archives are loaded with ``torch.jit.load`` (they cannot be read with ``weights_only``);
    all other files are read with ``weights_only=True``.

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
            with warnings.catch_warnings():  # OpenAI ships TorchScript; torch's deprecation notice is noise
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*", category=FutureWarning)
                checkpoint = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PretrainedWeightsError(
            f"cannot read weight file {path}: {exc}. Expected a TorchScript CLIP release, a torch.save'd "
            "state dict (optionally under 'state_dict') or a .safetensors file.") from exc
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint or not all(
            isinstance(v, Tensor) for v in checkpoint.values()):
        raise PretrainedWeightsError(
            f"weight file {path} holds {type(checkpoint).__name__}, not a non-empty dict of tensors "
            "(a state dict, or a checkpoint with one under 'state_dict')")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return {k: v for k, v in checkpoint.items() if k not in _OPENAI_SETTINGS_KEYS}


def resize_grid_embedding(table: Tensor, grid: tuple[int, int]) -> Tensor:
    """Resize a ``(1 + h*w, C)`` positional table (class position first) to ``grid`` = (h', w').

    The square source grid is interpolated bilinearly with ``align_corners=False`` (as the official
    CLAMP/DenseCLIP code does); the class position is kept unchanged. Computed in fp32, returned in the
    input dtype.
    """
    tokens = table.shape[0] - 1
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"positional table with {tokens} grid rows is not a square grid")
    if (side, side) == tuple(grid):
        return table
    cls_pos, spatial = table[:1], table[1:].float()
    spatial = spatial.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=tuple(grid), mode="bilinear", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(table.dtype)
    return torch.cat([cls_pos, spatial], dim=0)


def resize_clip_positional_embeddings(state_dict: dict[str, Tensor],
                                      model: open_clip.CLIP) -> dict[str, Tensor]:
    """Resize the vision positional tables of ``state_dict`` to ``model``'s grid (new dict returned).

    Handles ``visual.attnpool.positional_embedding`` (ModifiedResNet) and ``visual.positional_embedding``
    (VisionTransformer); used for every checkpoint format, TorchScript included.
    """
    resized = dict(state_dict)
    targets = {name: param for name, param in model.state_dict().items()
               if name in ("visual.attnpool.positional_embedding", "visual.positional_embedding")}
    for name, target in targets.items():
        table = resized.get(name)
        if table is None or table.shape == target.shape:
            continue
        if table.ndim != 2 or table.shape[1] != target.shape[1]:
            raise PretrainedWeightsError(
                f"{name}: checkpoint shape {tuple(table.shape)} does not fit the model's {tuple(target.shape)}")
        # ViT: the model's patch grid; attention pool: its square table.
        grid = tuple(getattr(model.visual, "grid_size", (math.isqrt(target.shape[0] - 1),) * 2))
        try:
            resized[name] = resize_grid_embedding(table, grid)
        except ValueError as exc:
            raise PretrainedWeightsError(f"{name}: cannot resize the checkpoint table: {exc}") from exc
        logger.info("resized %s from %d to %d positions", name, table.shape[0], target.shape[0])
    return resized


def load_clip_state_dict(model: nn.Module, state_dict: dict[str, Tensor], *, source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, after resizing positional tables to its grid.

    Non-persistent buffers of ``model`` (e.g. the text ``attn_mask``, saved by TorchScript archives) are
    ignored. ``source`` names the file for error messages.

    Raises:
        PretrainedWeightsError: keys or shapes do not match ``model``.
    """
    persistent = set(model.state_dict())
    transient = {name for name, _ in model.named_buffers()} - persistent
    state_dict = {k: v for k, v in state_dict.items() if k not in transient}
    state_dict = resize_clip_positional_embeddings(state_dict, model)
    missing = sorted(persistent - set(state_dict))
    unexpected = sorted(set(state_dict) - persistent)
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"weights from {source} do not fit the model: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}. Is the file for another architecture?")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise PretrainedWeightsError(f"weights from {source} do not fit the model: {exc}") from exc
