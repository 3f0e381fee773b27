"""Reading the files users hand us, safely: JSON with a size cap, images with a pixel cap, output names.

Files come from strangers (annotation files, detector outputs, photo folders), so every read here is
bounded before it is parsed or decoded:

* JSON: the file size is checked before parsing (``max_bytes``; COCO's largest keypoint file,
  ``person_keypoints_train2017.json``, is 238 MB, below the default :data:`MAX_JSON_BYTES`);
* images: the pixel count is read from the header and checked before decoding, so a decompression
  bomb (a small file that expands to gigabytes) stops with a clear error (``max_pixels``, like
  Pillow's ``MAX_IMAGE_PIXELS``; default :data:`MAX_IMAGE_PIXELS`); truncated and undecodable files
  raise instead of decoding to grey garbage;
* output names derived from input names (``file_name`` fields, detector files) never leave the
  output folder (:func:`output_path`).

Images are decoded with Pillow, EXIF orientation applied (as OpenCV's ``IMREAD_COLOR``, which the
official mmcv pipeline uses; the pixels are identical), any mode (grey, palette, RGBA, 16-bit, CMYK)
converted to 8-bit RGB. Transparency is dropped, not composited: each pixel keeps its stored colour,
as with ``cv2.imread`` (``IMREAD_COLOR``) and Pillow's ``convert("RGB")``. A file of several frames
(an animated GIF, WebP or PNG, a multi-page TIFF) gives its first frame (:func:`frame_count` says
how many it has).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clamp.errors import ClampError, MissingFileError

#: Default cap on a JSON input's size in bytes (1 GiB).
MAX_JSON_BYTES = 1 << 30
#: Default cap on an image's pixel count (Pillow's own default, about 89.5 megapixels).
MAX_IMAGE_PIXELS = 89_478_485

# EXIF orientations 5-8 transpose the image: width and height swap.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


class InputFileError(ClampError):
    """A user's input file is missing, too large, unreadable or malformed."""


class ImageError(InputFileError):
    """An image file is missing, not an image, truncated, or larger than the pixel cap."""


def read_json(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file after checking that it exists and is at most ``max_bytes`` long.

    ``what`` names the file's role in messages ("annotation file", "boxes file", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputFileError(
            f"{what} {path} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB allowed; "
            "pass a larger limit if the file is trusted"
        )
    data = path.read_bytes()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{what} {path} is not valid JSON ({err})") from None


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open an image lazily (header only) and check its pixel count against ``max_pixels``."""
    if not path.is_file():
        raise MissingFileError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            # The pixel cap is ours; Pillow's own bomb warning would only repeat it less clearly.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        image = None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"cannot read image {path}: not an image file ({err})") from None
    if image is None or image.width * image.height > max_pixels:
        size = "" if image is None else f" ({image.width}x{image.height})"
        raise ImageError(
            f"image {path}{size} has more than {max_pixels:,} pixels (the decompression-bomb cap); "
            "raise max_image_pixels if the file is trusted"
        )
    return image


def image_size(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of an image as it will be decoded (EXIF orientation applied), from its header."""
    with _open(Path(path), max_pixels) as image:
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        except (OSError, ValueError, SyntaxError):  # a corrupt EXIF block: decoding will tell
            orientation = 1
        if orientation in _TRANSPOSING_ORIENTATIONS:
            return image.height, image.width
        return image.width, image.height


def frame_count(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> int:
    """How many frames an image file holds (an animation's or a multi-page TIFF's; 1 for most files).

    The extra pictures of an MPO (a camera JPEG with its previews or stereo view) are not frames.
    """
    with _open(Path(path), max_pixels) as image:
        if image.format == "MPO":
            return 1
        try:
            return max(1, int(getattr(image, "n_frames", 1)))
        except (OSError, ValueError, SyntaxError, EOFError):  # a corrupt later frame: decoding the first will tell
            return 1


def read_image_rgb(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image as an (H, W, 3) uint8 RGB array (module docstring: checks and conversions)."""
    path = Path(path)
    with _open(path, max_pixels) as image:
        try:
            image.load()
            # In place: without an EXIF orientation nothing is copied (a 1024-px image copy costs ~2 ms).
            ImageOps.exif_transpose(image, in_place=True)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ImageError(f"cannot decode image {path}: truncated or corrupt ({err})") from None
        return _to_rgb8(image)


def read_image_rgb_reduced(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS, max_reduction: int = 1
) -> tuple[np.ndarray, int]:
    """:func:`read_image_rgb` at up to 1/``max_reduction`` of the size (1, 2, 4 or 8), and the factor it
    was decoded at: the fast path of ``data.reduced_decode``.

    An 8-bit colour JPEG without an EXIF rotation or mirror and with its end marker is decoded by
    OpenCV's libjpeg-turbo straight into an array (Pillow's array conversion copies the image once
    more), at 1/2, 1/4 or 1/8 by DCT scaling when ``max_reduction`` allows: a 1024-px photo at 1/2 in
    about 40% of the time. Reduced pixel ``j`` covers full pixels ``factor*j ... factor*j + factor - 1``
    (:func:`clamp.data.transforms.reduction_matrix`). Anything else takes :func:`read_image_rgb`.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        fast = image.format == "JPEG" and image.mode == "RGB" and _orientation(image) == 1
    if fast:
        data = np.fromfile(path, dtype=np.uint8)
        # No end marker: truncated (or trailing bytes); Pillow's path says which, OpenCV would pad with grey.
        if data[-2:].tobytes() == b"\xff\xd9":
            factor = next(f for f in _CV2_REDUCED if f <= max(1, max_reduction))
            bgr = cv2.imdecode(data, _CV2_REDUCED[factor])
            if bgr is not None and bgr.ndim == 3:
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), factor
    return read_image_rgb(path, max_pixels), 1


#: OpenCV's reduced JPEG decodes, largest factor first.
_CV2_REDUCED = {
    8: cv2.IMREAD_REDUCED_COLOR_8,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    1: cv2.IMREAD_COLOR,
}


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except (OSError, ValueError, SyntaxError, TypeError):  # a corrupt EXIF block: decoded whole
        return 0


def _to_rgb8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale the full range to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array * (255.0 / high) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Alpha dropped, every pixel keeps its stored colour, as OpenCV's IMREAD_COLOR (the official
        # pipeline's reader) does; through RGBA so that a palette's transparency raises no warning.
        image = image.convert("RGBA").convert("RGB")
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def new_file_mode() -> int:
    """The permission bits a file created now gets, ``0o666`` less the process's umask (read from /proc on
    Linux, so that no other thread ever runs under a changed umask)."""
    try:
        found = re.search(r"^Umask:\s*([0-7]+)$", Path("/proc/self/status").read_text(), flags=re.MULTILINE)
    except OSError:
        found = None
    if found is not None:
        mask = int(found.group(1), 8)
    else:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def give_default_mode(path: str | os.PathLike | int) -> None:
    """Set a file (a path or an open descriptor) to the mode of an ordinary new file (:func:`new_file_mode`):
    writers that create private 0600 files (``tempfile.mkstemp``, safetensors) would otherwise keep the
    user's checkpoints and exports from the group and the others their umask allows."""
    if isinstance(path, int):
        os.fchmod(path, new_file_mode())
    else:
        os.chmod(path, new_file_mode())


_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def output_path(output_dir: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """A file under ``output_dir`` for an output named after an input ``name`` (a relative path).

    Path components are kept as sub-folders, but ``..``, absolute roots, drive letters and unusual
    characters are neutralised, so whatever the input names are (``../../etc/x``, ``/tmp/a.jpg``,
    ``C:\\x``), the result lies inside ``output_dir``. ``suffix`` is appended to the file name.
    """
    root = Path(output_dir).resolve()
    parts = [p for p in re.split(r"[\\/]+", str(name)) if p not in ("", ".", "..")]
    parts = [_UNSAFE_CHARACTERS.sub("_", p).lstrip(".") or "_" for p in parts] or ["_"]
    candidate = root.joinpath(*parts[:-1], parts[-1] + suffix).resolve()
    if root != candidate and root not in candidate.parents:  # a symlinked sub-folder pointing outside
        candidate = root / ("_".join(parts) + suffix)
    return candidate
