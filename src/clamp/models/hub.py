"""Where pretrained weights come from: a local file, the local caches, or a download that never waits.

An open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``, ...) is looked up in the local caches first
(Hugging Face hub cache, ``~/.cache/clip``); when the file is not there, ``HF_HUB_OFFLINE=1`` or a failed
3-second probe of the download host (HTTP HEAD) raises :class:`PretrainedWeightsError` at once, instead
of huggingface_hub's ~46 s of retries, with the ways to supply the file.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip

from clamp.models.weight_files import PretrainedWeightsError

# OpenAI's release file names, for the error message that tells a user what to download.
_OPENAI_FILES = {"RN50": "RN50.pt", "ViT-B-16": "ViT-B-16.pt", "ViT-L-14": "ViT-L-14.pt"}
_STATE_DICT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}
_PROBE_TIMEOUT_S = 3.0


def resolve_pretrained(arch: str, pretrained: str | os.PathLike, tags: bool = True) -> tuple[Path, bool | None]:
    """Local checkpoint path for ``pretrained`` (file or tag) and the tag's quick_gelu (None for files)."""
    path = Path(os.path.expanduser(str(pretrained)))
    if path.is_file():
        return path, None
    text = str(pretrained)
    if path.suffix in _STATE_DICT_SUFFIXES or os.sep in text or "/" in text:
        raise PretrainedWeightsError(
            f"pretrained weight file {text!r} for arch {arch!r} does not exist. Pass an existing file "
            f"(e.g. OpenAI's {_OPENAI_FILES.get(arch, 'RN50.pt')}), an open_clip tag, or pretrained=null."
        )
    if not tags:
        raise PretrainedWeightsError(
            f"{arch!r} is a random-weight test config with no pretrained tags (got {text!r}); "
            "use pretrained=null or a weight file saved from the same config."
        )
    tag_cfg = open_clip.get_pretrained_cfg(arch, text)
    if not tag_cfg:
        raise PretrainedWeightsError(
            f"pretrained={text!r} is neither an existing file nor an open_clip tag for arch {arch!r}. "
            f"Known tags: {open_clip.list_pretrained_tags_by_model(arch)}; or pass a file path or null."
        )
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
        f"or use pretrained=null for random weights."
    )


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
