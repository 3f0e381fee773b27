"""Keypoints for your own images and videos: ``python -m clamp.predict ckpt=PATH input=photos/``.

``ckpt`` is a training checkpoint (``.ckpt``), an exported model folder (``python -m clamp.export``),
a Hub model ``hf-hub:ORG/NAME`` (:mod:`clamp.model_hub`) or an ONNX file (``format=onnx``; run with
onnxruntime, ``backend=onnx``, chosen by the suffix).
``input`` is an image, a video (.mp4, .avi, .mov, .mkv, .webm, ...) or a folder of them
(``recursive=true`` for sub-folders). An animated image (GIF, WebP, PNG) or a multi-page TIFF is
predicted on its first frame, with a note in its entry, given alone or found in a folder. Each image
or frame is one animal framed by the whole picture unless ``boxes=FILE`` gives boxes:

* a JSON list of ``{"file_name": "a.jpg", "bbox": [x, y, w, h]}`` (several entries per image for
  several animals; for a video add ``"frame": <index from 0>``, or leave it out to use the box in
  every frame);
* a COCO detection-results list of any detector (``image_id``, ``bbox``, ``score``; kept above
  ``box_score_threshold``);
* a COCO annotation file (its ``images`` and ``annotations``).

With a boxes file, "nothing detected" stays nothing: an image or video the file does not mention has
no animal, like one whose boxes are all below the threshold and like a frame without an entry in a
video with per-frame entries; ``predictions.json`` lists the inputs without an entry under
``without_boxes``, and ``missing_boxes=whole_image`` frames them whole instead (one animal each).
Image ids match files by the annotation file's ``file_name`` or by the number in the file name
(``000000037516.jpg`` is 37516). A file that is not one of these formats stops the run with one line
naming the file, the record and the field.

Boxes are clipped to the picture as the evaluation clips its boxes, and keypoints clipped to it, so
none lies outside (:mod:`clamp.predictor`); a picture or box that keeps less than 2 pixels of width
or height inside the picture (a 1x1 image) is skipped by name with the reason.

Writes under ``output``: ``predictions.json`` (per image each animal's named keypoints with scores;
per video where its results are; what was skipped and why; the model and whether it is a demo
model), one drawing per image, ``<name>.<ext>.pose.jpg`` (``<name>.<ext>.scores.jpg`` too with
``score_maps=true``: CLAMP's per-keypoint score maps over each animal's crop), and per video a drawn
``<name>.<ext>.pose.mp4`` and its per-frame results ``<name>.<ext>.pose.json``. Names keep the
input's suffix (``a.jpg`` and ``a.png`` give ``a.jpg.pose.jpg`` and ``a.png.pose.jpg``), and no
output ever replaces another one or an input. An unreadable image or video is reported by name and
skipped; every other one gets its result. Crops of several images (and frames) share each forward pass.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from clamp.cli import hydra_entry_point
from clamp.errors import ClampError, MissingFileError, did_you_mean

log = logging.getLogger("clamp.predict")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
BACKENDS = ("auto", "torch", "onnx")
PROGRESS_MODES = ("auto", "bar", "lines", "none")
#: ``missing_boxes``: what an input the boxes file does not mention gets (no animal, or the whole picture).
MISSING_BOXES = ("none", "whole_image")
#: Files of the output folder itself, never used for a drawing or per-video results.
RESERVED_OUTPUTS = ("predictions.json", "predict.log", ".hydra")
#: What the outputs' names end with; in an input folder that is also the output folder, such files
#: are an earlier run's outputs, not inputs.
OUTPUT_SUFFIXES = (".pose.jpg", ".scores.jpg", ".names.jpg", ".pose.mp4", ".pose.json")
_FRAME_KEY = "{key}@frame={frame}"


class BoxesFileError(ClampError):
    """A boxes file that is not one of the accepted formats; the message names file, record and field."""


# ---- inputs ---------------------------------------------------------------------------------
def list_inputs(path: Path, recursive: bool = False, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """The image and video files of ``input`` (the file itself, or a folder's, sorted), and the other
    files of a folder (neither image nor video by their suffix; hidden files are left out).

    ``exclude`` is the output folder: inside the input folder its files are never inputs; when it is
    the input folder itself, files named like outputs (:data:`OUTPUT_SUFFIXES`) are left out.
    """
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise MissingFileError(f"input not found: {path} (pass input=an image, a video or a folder of them)")
    found = path.rglob("*") if recursive else path.iterdir()
    excluded = exclude.resolve() if exclude is not None else None
    media, others = [], []
    for p in sorted(found):
        relative = p.relative_to(path)
        if not p.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        inside_output = excluded is not None and excluded in p.resolve().parents
        if inside_output and (excluded != path.resolve() or p.name.lower().endswith(OUTPUT_SUFFIXES)):
            continue
        (media if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES else others).append(p)
    if not media:
        raise ClampError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or videos "
            f"({', '.join(sorted(VIDEO_SUFFIXES))}) in {path}"
            + ("" if recursive else " (recursive=true searches sub-folders)")
        )
    return media, others


def list_images(path: Path, recursive: bool = False) -> list[Path]:
    """The image and video files of ``input`` (see :func:`list_inputs`)."""
    return list_inputs(path, recursive)[0]


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


# ---- boxes files ----------------------------------------------------------------------------
def _number(value: Any, path: Path, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BoxesFileError(f"{path}: {where}: field '{field}' = {value!r} is not a number")
    if not math.isfinite(value):
        raise BoxesFileError(f"{path}: {where}: field '{field}' = {value!r} is not a finite number")
    return float(value)


def _image_id(value: Any, path: Path, where: str, field: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BoxesFileError(f"{path}: {where}: field '{field}' = {value!r} must be an integer or a string")
    return value


def _looks_like_an_image(path: Path) -> bool:
    try:
        head = path.open("rb").read(16)
    except OSError:
        return False
    signatures = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
    return head.startswith(signatures)


def read_boxes(path: Path, score_threshold: float = 0.0) -> dict[str, list[list[float]]]:
    """Boxes per image key (a file name, ``"#<image id>"``, or ``"<video name>@frame=<n>"``) from any
    accepted boxes file (module docstring)."""
    from clamp.files import read_json

    if path.is_file() and _looks_like_an_image(path):
        raise BoxesFileError(
            f"boxes file {path} is an image, not a JSON file of boxes (pass boxes=FILE.json; the images go in input=)"
        )
    data = read_json(path, "boxes file", max_bytes=256 << 20)
    names: dict[int | str, str] = {}
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
            raise BoxesFileError(
                f"{path}: a JSON object must be a COCO file with 'images' and 'annotations' lists "
                f"(it has {sorted(data)[:6]})"
            )
        for i, image in enumerate(data["images"]):
            if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
                raise BoxesFileError(f"{path}: images[{i}] needs 'id' and a 'file_name' string")
            names[_image_id(image["id"], path, f"images[{i}]", "id")] = image["file_name"]
        records, where_format = data["annotations"], "annotations[{}]"
    elif isinstance(data, list):
        records, where_format = data, "record {}"
    else:
        raise BoxesFileError(f"{path}: expected a JSON list of boxes or a COCO file, got {type(data).__name__}")
    boxes: dict[str, list[list[float]]] = {}
    for i, record in enumerate(records):
        where = where_format.format(i)
        if not isinstance(record, dict):
            raise BoxesFileError(f"{path}: {where} is {type(record).__name__}, not an object")
        bbox = record.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise BoxesFileError(f"{path}: {where}: field 'bbox' = {bbox!r} must be [x, y, w, h]")
        box = [_number(v, path, where, "bbox") for v in bbox]
        if box[2] <= 0 or box[3] <= 0:
            raise BoxesFileError(
                f"{path}: {where}: field 'bbox' = {bbox} has a non-positive width or height "
                "(boxes are [x, y, width, height])"
            )
        if "file_name" in record:
            if not isinstance(record["file_name"], str) or not record["file_name"]:
                raise BoxesFileError(
                    f"{path}: {where}: field 'file_name' = {record['file_name']!r} must be a file name"
                )
            key = record["file_name"]
        elif "image_id" in record:
            image_id = _image_id(record["image_id"], path, where, "image_id")
            key = names.get(image_id, f"#{image_id}")
        else:
            raise BoxesFileError(f"{path}: {where} needs 'file_name' or 'image_id'")
        if "frame" in record:
            frame = record["frame"]
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise BoxesFileError(f"{path}: {where}: field 'frame' = {frame!r} must be a frame index (0, 1, ...)")
            key = _FRAME_KEY.format(key=key, frame=frame)
        # An image whose every detection is below the threshold keeps an empty list: no animal there.
        entries = boxes.setdefault(key, [])
        if "score" not in record or _number(record["score"], path, where, "score") >= score_threshold:
            entries.append(box)
    return boxes


def input_name(path: Path, root: Path) -> str:
    """An input's name in outputs and messages: its path under the input folder ``root``, else its file name."""
    return path.relative_to(root).as_posix() if root in path.parents else path.name


def _candidate_keys(path: Path, root: Path) -> list[str]:
    return list(dict.fromkeys((input_name(path, root), path.name)))


def boxes_for(image: Path, root: Path, boxes: dict[str, list[list[float]]]) -> list[list[float]] | None:
    """The boxes of one image file: by its path under ``root``, its name, or the number in its name."""
    key = _box_key(image, root, boxes)
    return None if key is None else boxes[key]


def _box_key(image: Path, root: Path, boxes: dict[str, list[list[float]]]) -> str | None:
    for key in _candidate_keys(image, root):
        if key in boxes:
            return key
    digits = re.fullmatch(r"0*(\d+)", image.stem)
    if digits is not None and f"#{int(digits.group(1))}" in boxes:
        return f"#{int(digits.group(1))}"
    return None


class BoxTable:
    """A read boxes file, looked up per image or per video frame; remembers which entries were used
    and which inputs it does not mention (:attr:`without_boxes`).

    An input the file does not mention has no animal (a detector found nothing there), unless
    ``missing_boxes="whole_image"``: then it is framed whole, as without a boxes file.
    """

    def __init__(self, boxes: dict[str, list[list[float]]] | None, root: Path, missing_boxes: str = "none") -> None:
        if missing_boxes not in MISSING_BOXES:
            raise ClampError(
                f"missing_boxes={missing_boxes!r}{did_you_mean(missing_boxes, MISSING_BOXES)}: "
                f"choose one of {list(MISSING_BOXES)}"
            )
        self.boxes = boxes
        self.root = root
        self.missing_boxes = missing_boxes
        self.used: set[str] = set()
        self.without_boxes: list[str] = []

    def _lookup(self, path: Path) -> list[list[float]] | None:
        if self.boxes is None:
            return None
        key = _box_key(path, self.root, self.boxes)
        if key is None:
            return None
        self.used.add(key)
        return self.boxes[key]

    def _missing(self, path: Path) -> list[list[float]] | None:
        """What an input without entries gets, noted by name: no box, or None (the whole picture)."""
        self.without_boxes.append(input_name(path, self.root))
        return [] if self.missing_boxes == "none" else None

    def for_image(self, path: Path) -> list[list[float]] | None:
        """An image's boxes (None: frame it whole)."""
        if self.boxes is None:
            return None
        found = self._lookup(path)
        return self._missing(path) if found is None else found

    def for_video(self, path: Path) -> tuple[list[list[float]] | None, dict[int, list[list[float]]] | None]:
        """A video's boxes: for every frame (None: whole frames) and per frame index (None: not given)."""
        if self.boxes is None:
            return None, None
        every = self._lookup(path)
        per_frame: dict[int, list[list[float]]] = {}
        for key in _candidate_keys(path, self.root):
            prefix = _FRAME_KEY.format(key=key, frame="")
            for name, entries in self.boxes.items():
                if name.startswith(prefix):
                    per_frame[int(name[len(prefix) :])] = entries
                    self.used.add(name)
            if per_frame:
                break
        if every is None and not per_frame:
            return self._missing(path), None
        return every, per_frame or None

    def unused(self) -> list[str]:
        return [] if self.boxes is None else [key for key in self.boxes if key not in self.used]


# ---- outputs --------------------------------------------------------------------------------
class OutputNames:
    """Output files named after inputs, each handed out once: no output replaces another or an input.

    ``a.jpg`` and ``a.png`` differ by their kept suffix; names that only differ in characters
    :func:`clamp.files.output_path` neutralises (``a b.jpg``, ``a_b.jpg``) or in case get ``~2``, ``~3``.
    """

    def __init__(self, root: Path, reserved: Iterable[Path] = ()) -> None:
        self.root = root.resolve()
        self.taken = {self._key(self.root / name) for name in RESERVED_OUTPUTS}
        self.taken |= {self._key(path) for path in reserved}

    @staticmethod
    def _key(path: Path) -> str:
        return str(path.resolve()).casefold()

    def claim(self, name: str, suffix: str) -> Path:
        from clamp.files import output_path

        candidate, n = output_path(self.root, name, suffix), 1
        while self._key(candidate) in self.taken:
            n += 1
            candidate = output_path(self.root, f"{name}~{n}", suffix)
        self.taken.add(self._key(candidate))
        candidate.parent.mkdir(parents=True, exist_ok=True)
        return candidate

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def write_image(path: Path, rgb) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ClampError(f"cannot write {path} (is the output folder writable, the disk full?)")


# ---- progress -------------------------------------------------------------------------------
class Progress:
    """A progress bar on a terminal, else a log line every ``every`` items (``mode``: PROGRESS_MODES)."""

    def __init__(self, mode: str, every: int) -> None:
        if mode not in PROGRESS_MODES:
            raise ClampError(
                f"progress={mode!r}{did_you_mean(mode, PROGRESS_MODES)}: choose one of {list(PROGRESS_MODES)}"
            )
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.every = max(1, int(every))
        self._bar = None

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task(self, label: str, total: int | None) -> _Task:
        return _Task(self, label, total)


class _Task:
    def __init__(self, progress: Progress, label: str, total: int | None) -> None:
        self.progress, self.label, self.total, self.done = progress, label, total, 0
        self._id = progress._bar.add_task(label, total=total) if progress._bar is not None else None

    def advance(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if self._id is not None:
            self.progress._bar.advance(self._id, n)
        elif self.progress.mode == "lines" and (
            self.done // self.progress.every > before // self.progress.every or self.done == self.total
        ):
            log.info("%s: %d%s", self.label, self.done, f"/{self.total}" if self.total else "")


# ---- the command ----------------------------------------------------------------------------
def load_predictor(cfg: DictConfig):
    """The :class:`~clamp.predictor.Predictor` of ``ckpt`` for ``backend`` (auto: ONNX for a .onnx file)."""
    from clamp.model_hub import is_hub_id
    from clamp.predictor import Predictor

    ckpt = Path(cfg.ckpt)
    backend = str(cfg.backend)
    if backend not in BACKENDS:
        raise ClampError(f"backend={backend!r}{did_you_mean(backend, BACKENDS)}: choose one of {list(BACKENDS)}")
    hub = is_hub_id(str(cfg.ckpt))
    is_onnx_file = ckpt.suffix.lower() == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx_file else "torch"
    options = {
        "flip_test": cfg.evaluation.flip_test,
        "shift_heatmap": cfg.evaluation.shift_heatmap,
        "score_threshold": cfg.evaluation.score_threshold,
        "batch_size": cfg.batch_size,
        "max_image_pixels": cfg.max_image_pixels,
    }
    if backend == "onnx":
        if hub or ckpt.is_dir() or ckpt.suffix.lower() == ".ckpt":
            raise ClampError(
                f"backend=onnx runs an .onnx file, not {ckpt}; write one with `python -m clamp.export "
                f"ckpt={ckpt} format=onnx out=model.onnx` (or use backend=torch)"
            )
        return Predictor.from_onnx(ckpt, device=cfg.device, **options)
    if is_onnx_file:
        raise ClampError(f"ckpt={ckpt} is an ONNX file: run it with backend=onnx (or backend=auto)")
    if hub or ckpt.is_dir():
        return Predictor.from_pretrained(str(cfg.ckpt) if hub else ckpt, device=cfg.device, **options)
    return Predictor.from_checkpoint(ckpt, device=cfg.device, **options)


class PredictionRun:
    """One prediction run: batches images across files, draws and records them, streams videos.

    ``cfg`` gives the drawing and score-map options (``draw_names``, ``draw_threshold``, ``score_maps``,
    ``names``); what it found is in :attr:`images`, :attr:`videos` and :attr:`skipped`
    (:func:`prediction_report` makes ``predictions.json`` of them).
    """

    def __init__(
        self, cfg: DictConfig, predictor, names: OutputNames, boxes: BoxTable, root: Path, progress: Progress
    ) -> None:
        self.cfg, self.predictor, self.names, self.boxes, self.root = cfg, predictor, names, boxes, root
        self.progress = progress
        self.images: list[dict[str, Any]] = []
        self.videos: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.frames = 0

    def skip(self, name: str, reason: str) -> None:
        log.warning("skipped %s: %s", name, reason)
        self.skipped.append({"file_name": name, "reason": reason})

    def draw(self, rgb, animals):
        return self.predictor.draw(
            rgb, animals, show_names=self.cfg.draw_names, score_threshold=self.cfg.draw_threshold
        )

    # images: read and checked one by one (a bad one is skipped), predicted in shared batches
    def run_images(self, paths: Sequence[Path]) -> None:
        from clamp.files import frame_count
        from clamp.predictor import check_box, check_image_size

        task = self.progress.task("images", len(paths))
        pending: list[tuple[str, Any, list[list[float]] | None, str | None]] = []
        crops = 0
        for path in paths:
            name = input_name(path, self.root)
            try:
                rgb = self.predictor.read_image(path)
                check_image_size(rgb.shape[1], rgb.shape[0])
                frames = frame_count(path, self.predictor.max_image_pixels)
                image_boxes = self.boxes.for_image(path)
                if image_boxes is not None:
                    image_boxes = [check_box(box, rgb.shape[1], rgb.shape[0]) for box in image_boxes]
            except ClampError as err:
                self.skip(name, str(err))
                task.advance()
                continue
            note = None
            if frames > 1:
                # An animation is predicted on its first frame, in a folder as given alone: said, not silent.
                note = f"only the first of its {frames} frames is predicted"
                log.warning("%s: %s", name, note)
            pending.append((name, rgb, image_boxes, note))
            crops += 1 if image_boxes is None else len(image_boxes)
            if crops >= self.predictor.batch_size:
                self._predict_images(pending, task)
                pending, crops = [], 0
        if pending:
            self._predict_images(pending, task)

    def _predict_images(self, pending, task: _Task) -> None:
        score_maps = bool(self.cfg.score_maps)
        results = self.predictor.predict_many(
            [rgb for _, rgb, _, _ in pending], [b for _, _, b, _ in pending], score_maps=score_maps
        )
        for (name, rgb, image_boxes, note), animals in zip(pending, results):
            drawing_path = self.names.claim(name, ".pose.jpg")
            write_image(drawing_path, self.draw(rgb, animals))
            entry = {
                "file_name": name,
                "width": rgb.shape[1],
                "height": rgb.shape[0],
                "drawing": self.names.relative(drawing_path),
                "animals": [a.to_dict() for a in animals],
            }
            if note is not None:
                entry["note"] = note
            if score_maps and animals:
                scores_path = self.names.claim(name, ".scores.jpg")
                write_image(scores_path, self.predictor.draw_score_maps(animals))
                entry["score_maps"] = self.names.relative(scores_path)
            if self.cfg.names and animals:
                entry["named_keypoints"] = self._locate(name, rgb, image_boxes)
            self.images.append(entry)
            task.advance()

    def _locate(self, name: str, rgb, boxes) -> dict[str, Any]:
        """``names=``: the named keypoints' score maps drawn as ``<name>.<ext>.names.jpg``, their peaks for the JSON."""
        from clamp.predictor import COARSE_MAPS_NOTE

        located = self.predictor.locate(rgb, _names(self.cfg), boxes)
        path = self.names.claim(name, ".names.jpg")
        write_image(path, self.predictor.draw_score_maps(located))
        animals = [a.to_dict() for a in located]
        return {"note": COARSE_MAPS_NOTE, "drawing": self.names.relative(path), "animals": animals}

    # videos: frames read in order, predicted in batches, drawn into a video of the same fps and size
    def run_video(self, path: Path) -> None:
        from clamp.video import VideoReader

        name = input_name(path, self.root)
        outputs: list[Path] = []
        try:
            with VideoReader(path) as video:
                entry = self._predict_video(video, name, outputs)
        except (ClampError, OSError) as err:
            for output in outputs:
                output.unlink(missing_ok=True)
            self.skip(name, str(err))
            return
        self.videos.append(entry)

    def _predict_video(self, video, name: str, outputs: list[Path]) -> dict[str, Any]:
        from clamp.predictor import check_box, check_image_size
        from clamp.video import VideoWriter

        check_image_size(video.width, video.height)
        every, per_frame = self.boxes.for_video(video.path)
        drawing_path = self.names.claim(name, ".pose.mp4")
        results_path = self.names.claim(name, ".pose.json")
        outputs += [drawing_path, results_path]
        frames: list[dict[str, Any]] = []
        task = self.progress.task(f"frames of {name}", video.frame_count or None)
        with VideoWriter(drawing_path, video.fps, video.size) as writer:
            batch, crops = [], 0
            for frame in video:
                boxes = every if per_frame is None else per_frame.get(frame.index, [])
                if boxes is not None:
                    try:
                        boxes = [check_box(b, video.width, video.height) for b in boxes]
                    except ClampError as err:
                        raise ClampError(f"frame {frame.index}: {err}") from None
                batch.append((frame, boxes))
                crops += 1 if boxes is None else len(boxes)
                if crops >= self.predictor.batch_size:
                    frames += self._predict_frames(batch, writer, task)
                    batch, crops = [], 0
            if batch:
                frames += self._predict_frames(batch, writer, task)
        entry = {
            "file_name": name,
            "fps": video.fps,
            "width": video.width,
            "height": video.height,
            "frames": len(frames),
            "drawing": self.names.relative(drawing_path),
            "results": self.names.relative(results_path),
        }
        if video.frame_count and len(frames) < video.frame_count:
            entry["note"] = f"decoded {len(frames)} of the {video.frame_count} frames the file reports"
        results = {"model": self.predictor.describe(), **entry, "frames": frames}
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        self.frames += len(frames)
        return entry

    def _predict_frames(self, batch, writer, task: _Task) -> list[dict[str, Any]]:
        results = self.predictor.predict_many([f.image for f, _ in batch], [b for _, b in batch])
        entries = []
        for (frame, _), animals in zip(batch, results):
            writer.write(self.draw(frame.image, animals))
            entries.append(
                {
                    "index": frame.index,
                    "timestamp": round(frame.timestamp, 4),
                    "animals": [a.to_dict() for a in animals],
                }
            )
            task.advance()
        return entries


def _names(cfg: DictConfig) -> str | list[str]:
    """``names=``: one name, or a list of them."""
    return cfg.names if isinstance(cfg.names, str) else list(cfg.names)


def prediction_report(predictor, run: PredictionRun, boxes: BoxTable) -> dict[str, Any]:
    """What ``predictions.json`` holds: the model, each image's and video's results, what was skipped
    and, with a boxes file, the inputs it does not mention."""
    report = {"model": predictor.describe(), "images": run.images, "videos": run.videos, "skipped": run.skipped}
    if boxes.boxes is not None:
        report["without_boxes"] = sorted(boxes.without_boxes)
    return report


def write_predictions(output: Path, report: dict[str, Any]) -> Path:
    """``output/predictions.json`` of a :func:`prediction_report`."""
    path = output / "predictions.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def predict(cfg: DictConfig) -> dict[str, Any]:
    source = Path(cfg.input)
    output = Path(cfg.output)
    media, others = list_inputs(source, cfg.recursive, exclude=output)
    root = source if source.is_dir() else source.parent
    boxes = BoxTable(
        read_boxes(Path(cfg.boxes), cfg.box_score_threshold) if cfg.boxes else None, root, str(cfg.missing_boxes)
    )
    predictor = load_predictor(cfg)
    if cfg.score_maps and not predictor.has_score_maps:
        raise ClampError(f"score_maps=true: {predictor._no_score_maps()}")
    if cfg.names:
        from clamp.predictor import COARSE_MAPS_NOTE

        predictor.check_names(_names(cfg))
        print(f"note: {COARSE_MAPS_NOTE}")
    if predictor.demo_reason:
        print(f"note: this is a demo model ({predictor.demo_reason}); it cannot find keypoints on real photos")
    output.mkdir(parents=True, exist_ok=True)
    names = OutputNames(output, reserved=media + others)
    images = [p for p in media if not is_video(p)]
    videos = [p for p in media if is_video(p)]
    if videos and (cfg.score_maps or cfg.names):
        log.info("score maps and named keypoints are drawn for images only, not for the frames of videos")
    started = time.perf_counter()
    with Progress(cfg.progress, cfg.progress_every) as progress:
        run = PredictionRun(cfg, predictor, names, boxes, root, progress)
        for path in others:
            name = path.relative_to(root).as_posix()
            run.skipped.append({"file_name": name, "reason": f"not an image or video file (suffix '{path.suffix}')"})
        if others:
            log.warning(
                "%d file(s) that are neither images nor videos were left out (listed in predictions.json)", len(others)
            )
        if images:
            run.run_images(images)
        for path in videos:
            run.run_video(path)
    seconds = time.perf_counter() - started
    unused = boxes.unused()
    if unused:
        log.warning(
            "%d entr%s of the boxes file match no input (e.g. %s)",
            len(unused),
            "y" if len(unused) == 1 else "ies",
            unused[0],
        )
    if boxes.without_boxes:
        log.warning(
            "%d input(s) have no entry in the boxes file (e.g. %s): %s (listed in predictions.json)",
            len(boxes.without_boxes),
            boxes.without_boxes[0],
            "no animal" if boxes.missing_boxes == "none" else "framed whole (missing_boxes=whole_image)",
        )
    report = prediction_report(predictor, run, boxes)
    predictions = write_predictions(output, report)
    done = len(run.images) + run.frames
    summary = f"{len(run.images)} image(s)" + (f", {len(run.videos)} video(s) ({run.frames} frames)" if videos else "")
    print(
        f"{summary} -> {predictions}"
        + (f"; {len(run.skipped)} skipped (listed there)" if run.skipped else "")
        + (
            f" [{seconds:.1f} s, {seconds / done:.3f} s per picture on {predictor.backend}"
            f"{'' if predictor.is_onnx else '/' + predictor.device.type}]"
            if done
            else ""
        )
    )
    if not run.images and not run.videos:
        raise ClampError(f"none of the {len(media)} input(s) could be read: {run.skipped[-1]['reason']}")
    return report


main = hydra_entry_point("predict", predict)

if __name__ == "__main__":
    main()
