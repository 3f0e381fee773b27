"""Reading video frames and writing drawn videos, on a short synthetic video written with cv2."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clamp.keypoints import AP10K
from clamp.video import VideoError, VideoReader, VideoWriter, iter_frames
from clamp.visualization import draw_pose

FPS = 12.0
WIDTH, HEIGHT = 96, 64
NUM_FRAMES = 15
SQUARE = 12


def square_x(index: int) -> int:
    """Left edge of the moving square in frame ``index``."""
    return 4 + 5 * index


def write_moving_square(path) -> None:
    """A red square moving right on black, written with plain cv2 (not the code under test)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(NUM_FRAMES):
        bgr = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        cv2.rectangle(bgr, (square_x(i), 20), (square_x(i) + SQUARE - 1, 20 + SQUARE - 1), (0, 0, 255), -1)
        writer.write(bgr)
    writer.release()


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "square.mp4"
    write_moving_square(path)
    return path


def test_reader_reports_fps_frame_count_and_size(video_path):
    with VideoReader(video_path) as video:
        assert video.fps == pytest.approx(FPS)
        assert video.frame_count == NUM_FRAMES
        assert video.size == (WIDTH, HEIGHT)


def test_frames_come_back_in_order_as_rgb_with_index_and_timestamp(video_path):
    frames = list(iter_frames(video_path))
    assert [f.index for f in frames] == list(range(NUM_FRAMES))
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(NUM_FRAMES)], abs=1e-6)
    for frame in frames:
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        red = frame.image[..., 0].astype(int) - frame.image[..., 2]
        columns = np.flatnonzero((red > 100).any(axis=0))
        # The square was drawn red in BGR, so it must be red (channel 0) in RGB, where it was put.
        assert abs(columns.min() - square_x(frame.index)) <= 1, frame.index
        assert abs(columns.max() - (square_x(frame.index) + SQUARE - 1)) <= 1, frame.index


def test_a_reader_can_be_iterated_twice(video_path):
    with VideoReader(video_path) as video:
        first = [f.image for f in video]
        second = [f.image for f in video]
    assert len(first) == len(second) == NUM_FRAMES
    np.testing.assert_array_equal(first[0], second[0])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        VideoReader(tmp_path / "nowhere.mp4")


def test_a_file_that_is_not_a_video_is_named(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(VideoError, match="notes.mp4"):
        VideoReader(fake)


def test_an_image_is_refused_as_a_video(tmp_path):
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(VideoError, match="still.png is an image"):
        VideoReader(image)


def test_drawn_video_keeps_the_input_fps_size_and_frames(video_path, tmp_path):
    out_path = tmp_path / "drawn.mp4"
    keypoints = np.zeros((AP10K.num_keypoints, 3))
    with VideoReader(video_path) as video, VideoWriter(out_path, video.fps, video.size) as writer:
        for frame in video:
            keypoints[AP10K.keypoint_names.index("nose")] = (square_x(frame.index) + SQUARE / 2, 40, 1.0)
            writer.write(draw_pose(frame.image, keypoints, AP10K))
    with VideoReader(out_path) as drawn:
        assert drawn.fps == pytest.approx(FPS)
        assert drawn.size == (WIDTH, HEIGHT)
        frames = list(drawn)
    assert len(frames) == NUM_FRAMES
    # The drawn nose point (purple, below the red square) survived encoding.
    last = frames[-1].image.astype(int)
    x = square_x(NUM_FRAMES - 1) + SQUARE // 2
    assert last[40, x, 2] > 100 and last[40, x, 0] > 100


def test_writer_refuses_frames_of_another_size(tmp_path):
    with (
        VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT)) as writer,
        pytest.raises(ValueError, match=r"\(64, 96, 3\)"),
    ):
        writer.write(np.zeros((HEIGHT + 2, WIDTH, 3), np.uint8))


def test_writer_into_a_missing_folder_is_named(tmp_path):
    with pytest.raises(VideoError, match="no_such_folder"):
        VideoWriter(tmp_path / "no_such_folder" / "out.mp4", FPS, (WIDTH, HEIGHT))


@pytest.fixture(scope="module")
def noisy_video_bytes(tmp_path_factory) -> bytes:
    """A 30-frame video of noise (frames that fill the file, so that damage hits frame data)."""
    path = tmp_path_factory.mktemp("noise") / "noise.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    rng = np.random.default_rng(0)
    for _ in range(30):
        writer.write(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def ffmpeg_lines(stderr: str) -> list[str]:
    """FFmpeg's own log lines (``[mpeg4 @ 0x55d0...] header damaged``) in ``stderr``."""
    return [line for line in stderr.splitlines() if " @ 0x" in line]


def test_a_video_ffmpeg_cannot_open_is_one_error_with_ffmpegs_reason(noisy_video_bytes, tmp_path, capfd):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(noisy_video_bytes[: len(noisy_video_bytes) // 2])
    with pytest.raises(VideoError, match=r"open .*truncated.mp4 as a video \(FFmpeg: 'mov: moov atom not found'\)"):
        VideoReader(truncated)
    assert ffmpeg_lines(capfd.readouterr().err) == []


def test_ffmpegs_messages_on_a_damaged_video_become_one_warning_naming_the_file(
    noisy_video_bytes, tmp_path, capfd, caplog
):
    damaged, data = tmp_path / "damaged.mp4", bytearray(noisy_video_bytes)
    start = len(data) // 3
    data[start : start + 3000] = bytes((b * 7 + 13) % 256 for b in data[start : start + 3000])
    damaged.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="clamp.video"), VideoReader(damaged) as video:
        frames = list(video)
    assert 0 < len(frames) < 30
    assert ffmpeg_lines(capfd.readouterr().err) == []
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "clamp.video"]
    assert warning.startswith(f"{damaged} is damaged: FFmpeg: 'mpeg4: ") and f"; {len(frames)} of 30 frames" in warning
