"""Video frames in, drawn video out, with OpenCV's FFmpeg backend (opencv-python-headless has it).

``iter_frames(path)`` (or :class:`VideoReader` for fps, frame count and size) yields RGB frames with
their index and timestamp; :class:`VideoWriter` writes RGB frames to an .mp4 file::

    with VideoReader("cat.mp4") as video, VideoWriter("cat_pose.mp4", video.fps, video.size) as out:
        for frame in video:
            out.write(draw_pose(frame.image, keypoints_of(frame), spec))
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from clamp.errors import ClampError

# MPEG-4 Part 2: the one .mp4 encoder that pip's OpenCV wheels ship (they have no H.264 encoder).
DEFAULT_CODEC = "mp4v"


class VideoError(ClampError, ValueError):
    """A file that cannot be read or written as a video."""


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """Silence OpenCV's own warnings (a failed open prints them); our errors say what went wrong."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` from 0, ``timestamp`` in seconds, ``image`` uint8 RGB (H, W, 3)."""

    index: int
    timestamp: float
    image: np.ndarray


class VideoReader(contextlib.AbstractContextManager["VideoReader"]):
    """The frames of a video file, in order, as RGB.

    Attributes: ``path``, ``fps``, ``frame_count`` (as the container reports it; may be approximate
    for some files), ``width``, ``height``, ``size`` = (width, height). Iterating (again) starts at
    the first frame. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        # FFmpeg opens a still image as a one-frame "video"; tell the user instead.
        if cv2.haveImageReader(str(self.path)):
            raise VideoError(f"{self.path} is an image, not a video")
        with _opencv_quiet():
            self._capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise VideoError(f"cannot open {self.path} as a video (OpenCV's FFmpeg could not read it)")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        if not (math.isfinite(self.fps) and self.fps > 0):
            self.close()
            raise VideoError(f"{self.path} reports no frame rate; is it a video?")
        self.frame_count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as :class:`VideoWriter` takes it."""
        return self.width, self.height

    def __iter__(self) -> Iterator[Frame]:
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        index = 0
        while True:
            ok, bgr = self._capture.read()
            if not ok:
                break
            # The decoded frame's presentation time: right for variable frame rates too.
            timestamp = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield Frame(index, timestamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if index == 0:
            raise VideoError(f"no frame could be decoded from {self.path}")

    def close(self) -> None:
        self._capture.release()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def iter_frames(path: str | Path) -> Iterator[Frame]:
    """Yield the frames of the video at ``path`` (see :class:`VideoReader` for fps and size)."""
    with VideoReader(path) as video:
        yield from video


class VideoWriter(contextlib.AbstractContextManager["VideoWriter"]):
    """Writes uint8 RGB frames of one ``size`` = (width, height) to a video file at ``fps``.

    The default codec writes .mp4 files that common players open. MPEG-4 stores even sizes: an odd
    width or height loses its last column or row. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], codec: str = DEFAULT_CODEC) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        if not (math.isfinite(self.fps) and self.fps > 0) or min(self.size) <= 0:
            raise ValueError(f"VideoWriter needs fps > 0 and a positive size, got fps={fps}, size={size}")
        with _opencv_quiet():
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), self.fps, self.size
            )
        if not self._writer.isOpened():
            raise VideoError(
                f"cannot write video {self.path} with codec '{codec}' "
                "(does its folder exist? is the codec one this OpenCV build can encode?)"
            )

    def write(self, frame_rgb: np.ndarray) -> None:
        width, height = self.size
        if frame_rgb.shape != (height, width, 3) or frame_rgb.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frames must be uint8 RGB of shape ({height}, {width}, 3), "
                f"got {frame_rgb.dtype} {frame_rgb.shape}"
            )
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
