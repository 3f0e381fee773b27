"""Video frames in, drawn video out, with OpenCV's FFmpeg backend (opencv-python-headless has it).

``iter_frames(path)`` (or :class:`VideoReader` for fps, frame count and size) yields RGB frames with
their index and timestamp; :class:`VideoWriter` writes RGB frames to an .mp4 file. What FFmpeg says about
a damaged file (it writes straight to the process's stderr) is caught into one message naming the file:
the error of a file that cannot be opened, or one warning after reading a file it had trouble decoding::

    with VideoReader("cat.mp4") as video, VideoWriter("cat_pose.mp4", video.fps, video.size) as out:
        for frame in video:
            out.write(draw_pose(frame.image, keypoints_of(frame), spec))
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from clamp.errors import ClampError

log = logging.getLogger(__name__)

# MPEG-4 Part 2: the one .mp4 encoder that pip's OpenCV wheels ship (they have no H.264 encoder).
DEFAULT_CODEC = "mp4v"
# FFmpeg's log lines: "[mpeg4 @ 0x55d0c0a8] ac-tex damaged at 3 2", "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x..] moov ...".
_FFMPEG_LINE = re.compile(r"^\[(?P<component>[\w,]+) @ 0x[0-9a-fA-F]+\] (?P<text>.*\S)\s*$")


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


class _FFmpegMessages:
    """What FFmpeg writes to file descriptor 2 during the OpenCV calls made inside :meth:`catch`, collected as
    ``component: message`` lines in :attr:`lines`; anything else written there meanwhile goes on to stderr."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close(), with the reader)

    @contextlib.contextmanager
    def catch(self) -> Iterator[None]:
        sys.stderr.flush()
        stderr = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
            self._file.seek(0)
            written = self._file.read().decode(errors="replace")
            self._file.seek(0)
            self._file.truncate()
            for line in written.splitlines():
                found = _FFMPEG_LINE.match(line)
                if found:
                    self.lines.append(f"{found['component'].split(',')[0]}: {found['text']}")
                elif line.strip():
                    sys.stderr.write(line + "\n")

    def summary(self) -> str:
        """``FFmpeg: 'mpeg4: header damaged' (3 times), ...`` for messages; empty when FFmpeg said nothing."""
        counts: dict[str, int] = {}
        for line in self.lines:
            counts[line] = counts.get(line, 0) + 1
        shown = [f"'{line}'" + (f" ({n} times)" if n > 1 else "") for line, n in list(counts.items())[:3]]
        more = f" and {len(counts) - 3} other messages" if len(counts) > 3 else ""
        return f"FFmpeg: {', '.join(shown)}{more}" if counts else ""

    def close(self) -> None:
        self._file.close()


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
        self._ffmpeg = _FFmpegMessages()
        with _opencv_quiet(), self._ffmpeg.catch():
            # One decoding thread: FFmpeg then writes its messages inside the calls caught here, not later
            # from a frame thread of its own.
            self._capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not self._capture.isOpened():
            said = self._ffmpeg.summary() or "OpenCV's FFmpeg could not read it"
            self.close()
            raise VideoError(f"cannot open {self.path} as a video ({said})")
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
        with self._ffmpeg.catch():
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        index, finished = 0, False
        try:
            while True:
                with self._ffmpeg.catch():
                    ok, bgr = self._capture.read()
                if not ok:
                    break
                # The decoded frame's presentation time: right for variable frame rates too.
                timestamp = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                yield Frame(index, timestamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
            finished = True
        finally:
            said, self._ffmpeg.lines = self._ffmpeg.summary(), []
            if index == 0 and finished:
                raise VideoError(f"no frame could be decoded from {self.path}{f' ({said})' if said else ''}")
            if said:
                read = f"the first {index}" if not finished else f"{index} of {self.frame_count or 'its'}"
                log.warning("%s is damaged: %s; %s frames were read", self.path, said, read)

    def close(self) -> None:
        with self._ffmpeg.catch():  # flushing the decoder can still report the damage
            self._capture.release()
        self._ffmpeg.close()

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
