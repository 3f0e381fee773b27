"""``data.decoded_cache``: training images decoded once and kept as raw pixels on a local disk.

Decoding a 1024-px JPEG is most of a training sample's CPU time, and with DCT scaling it still costs
about half of it (entropy decoding reads the whole file at every scale, README: the input pipeline).
The cache decodes each training image the first time a sample needs it and writes the pixels as an
uncompressed ``.npy`` array, which later epochs memory-map: the warp then reads only the rows its
crop touches, from the page cache or the disk.

What is stored, per image:

* exact path (``data.reduced_decode=false``): the image as :func:`clamp.files.read_image_rgb` decodes
  it, so training is bit-identical to the uncached run;
* with ``data.reduced_decode=true``: the image at the largest DCT reduction that every crop any
  augmentation can draw from it still allows
  (:meth:`~clamp.data.transforms.TopDownTransform.smallest_reduction`, over all of the image's
  instances), so a sample never gets fewer pixels than the reduced path would give it.

A file is named after the image's absolute path, size, modification time and reduction: an edited or
replaced image gets a new entry (the old one is left behind; delete the folder to reclaim it). Files
are written whole under a temporary name and renamed, so concurrent DataLoader workers and DDP ranks
may fill the same folder. A damaged entry is decoded again and rewritten; a folder that cannot be
written (read-only, full) costs speed, not correctness: the image is decoded as without the cache,
and the first such failure in each process is logged once with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clamp.files import give_default_mode

logger = logging.getLogger(__name__)

#: Bumped when the stored form changes, so that old entries are never read as new ones.
CACHE_VERSION = 1


class DecodedImageCache:
    """Decoded RGB images (uint8 ``(H, W, 3)``) in ``folder``, keyed by source file and reduction."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser()
        self._write_failed = False

    def entry(self, source: Path, reduction: int) -> Path:
        """The cache file for ``source`` decoded at 1/``reduction``: named after what makes it valid."""
        stat = source.stat()
        key = f"{CACHE_VERSION}\0{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{reduction}"
        digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def read(
        self, source: Path, reduction: int, full_width: int, decode: Callable[[], tuple[np.ndarray, int]]
    ) -> tuple[np.ndarray, int]:
        """``source``'s pixels at 1/``reduction`` and the reduction they have, from the cache or, on a
        miss, from ``decode()`` (which returns 1 for an image without DCT scaling), then stored.

        ``full_width`` is the image's width: a stored array is as wide as that (not reduced) or as its
        1/``reduction`` decode (libjpeg rounds up); anything else is a damaged entry and decoded again.
        """
        entry = self.entry(source, reduction)
        try:
            pixels = np.load(entry, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, or damaged (a killed writer cannot leave one)
            pixels = None
        if pixels is not None and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
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
                    np.save(file, np.ascontiguousarray(image), allow_pickle=False)
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
