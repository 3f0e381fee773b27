"""``data.decoded_cache``: training images decoded once and kept as raw pixels on a local disk.

Decoding a 1024-px JPEG is most of a training sample's CPU time, and with DCT scaling it still costs
about half of it (entropy decoding reads the whole file at every scale, README: the input pipeline).
The cache decodes each training image the first time a sample needs it and writes the pixels
uncompressed, which later epochs memory-map: the warp then reads only the rows its crop touches, from
the page cache or the disk. An entry (``.rgb``) is a 16-byte header, ``CLAMPRGB`` and the height and
width as little-endian uint32, then the ``(H, W, 3)`` uint8 RGB rows (``numpy.fromfile(path,
np.uint8, offset=16).reshape(h, w, 3)`` reads one); a header parsed per sample, as ``.npy``'s is,
would cost more than the rest of the read.

What is stored, per image:

* exact path (``data.reduced_decode=false``): the image as :func:`clamp.files.read_image_rgb` decodes
  it, so training is bit-identical to the uncached run;
* with ``data.reduced_decode=true``: the image at the largest DCT reduction that every crop any
  augmentation can draw from it still allows
  (:meth:`~clamp.data.transforms.TopDownTransform.smallest_reduction`, over all of the image's
  instances), so a sample never gets fewer pixels than the reduced path would give it.

A file is named after the image's absolute path, size, modification time (read once per process)
and reduction: an image edited or replaced before a run gets a new entry (the old one is left behind;
delete the folder to reclaim it). Files are written whole under a temporary name and renamed, so
concurrent DataLoader workers and DDP ranks may fill the same folder. A damaged entry is decoded again
and rewritten; a folder that cannot be written (read-only, full) costs speed, not correctness: the
image is decoded as without the cache, and the first such failure in each process is logged once with
the reason.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clamp.files import give_default_mode

logger = logging.getLogger(__name__)

#: Bumped when the stored form changes, so that old entries are never read as new ones.
CACHE_VERSION = 2
_MAGIC = b"CLAMPRGB"
_HEADER = struct.Struct("<8sII")  # magic, height, width


class DecodedImageCache:
    """Decoded RGB images (uint8 ``(H, W, 3)``) in ``folder``, keyed by source file and reduction."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser()
        self._write_failed = False
        self._entries: dict[tuple[Path, int], Path] = {}

    def entry(self, source: Path, reduction: int) -> Path:
        """The cache file for ``source`` decoded at 1/``reduction``: named after what makes it valid."""
        known = self._entries.get((source, reduction))
        if known is None:
            stat = source.stat()
            key = f"{CACHE_VERSION}\0{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{reduction}"
            digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
            known = self._entries[(source, reduction)] = self.folder / digest[:2] / f"{digest}.rgb"
        return known

    def read(
        self, source: Path, reduction: int, full_width: int, decode: Callable[[], tuple[np.ndarray, int]]
    ) -> tuple[np.ndarray, int]:
        """``source``'s pixels at 1/``reduction`` and the reduction they have, from the cache or, on a
        miss, from ``decode()`` (which returns 1 for an image without DCT scaling), then stored.

        ``full_width`` is the image's width: a stored array is as wide as that (not reduced) or as its
        1/``reduction`` decode (libjpeg rounds up); anything else is a damaged entry and decoded again.
        """
        entry = self.entry(source, reduction)
        pixels = _map(entry)
        if pixels is not None:
            if pixels.shape[1] == full_width:
                return pixels, 1
            if pixels.shape[1] == -(-full_width // reduction):
                return pixels, reduction
        image, decoded_at = decode()
        self._store(entry, image)
        return image, decoded_at

    def _store(self, entry: Path, image: np.ndarray) -> None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(_HEADER.pack(_MAGIC, image.shape[0], image.shape[1]))
                    file.write(np.ascontiguousarray(image, dtype=np.uint8).data)
                give_default_mode(temporary)
                os.replace(temporary, entry)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as err:
            if not self._write_failed:
                self._write_failed = True
                logger.warning(
                    "data.decoded_cache=%s cannot be written (%s): images are decoded as without the cache",
                    self.folder,
                    err,
                )


def _map(entry: Path) -> np.ndarray | None:
    """An entry's pixels, memory-mapped read-only; None when it is missing or damaged."""
    try:
        with open(entry, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # missing, or empty (a killed writer cannot leave one; a disk can)
        return None
    if len(mapped) < _HEADER.size:
        return None
    magic, height, width = _HEADER.unpack_from(mapped)
    if magic != _MAGIC or len(mapped) != _HEADER.size + height * width * 3:
        return None
    return np.frombuffer(mapped, dtype=np.uint8, offset=_HEADER.size).reshape(height, width, 3)
