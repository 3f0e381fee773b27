"""Keypoints for your own images: ``python -m clamp.predict ckpt=PATH input=images/``.

``input`` is an image or a folder of images (``recursive=true`` for sub-folders). Each image is one
animal framed by the whole image unless ``boxes=FILE`` gives boxes: a JSON list of
``{"file_name": "a.jpg", "bbox": [x, y, w, h]}`` (several entries per image for several animals), a
COCO detection-results list (``image_id``, ``bbox``, ``score``; kept above ``box_score_threshold``),
or a COCO annotation file (its ``images`` and ``annotations``). An image the file does not mention is
framed whole; one whose boxes are all below the threshold has no animal. Image ids match files by the
annotation file's ``file_name`` or by the number in the file name (``000000037516.jpg`` is 37516).

Writes ``predictions.json`` (per image: each animal's named keypoints with scores; what was skipped
and why) and one drawing per image, ``<name>.pose.jpg``, under ``output``. An unreadable image is
reported by name and skipped; every other image gets its result.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from clamp.cli import hydra_entry_point
from clamp.errors import ClampError, MissingFileError

log = logging.getLogger("clamp.predict")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class BoxesFileError(ClampError):
    """A boxes file that is not one of the accepted formats; the message names file, record and field."""


def list_images(path: Path, recursive: bool = False) -> list[Path]:
    """The image files of ``input``: the file itself, or a folder's images (sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
        images = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images
        raise ClampError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}"
                         + ("" if recursive else " (recursive=true searches sub-folders)"))
    raise MissingFileError(f"input not found: {path} (pass input=an image or a folder of images)")


def _number(value: Any, path: Path, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BoxesFileError(f"{path}: {where}: field '{field}' = {value!r} is not a number")
    return float(value)


def read_boxes(path: Path, score_threshold: float = 0.0) -> dict[str, list[list[float]]]:
    """Boxes per image key (a file name, or ``"#<image id>"``) from any accepted boxes file (module docs)."""
    from clamp.files import read_json

    data = read_json(path, "boxes file", max_bytes=256 << 20)
    names: dict[int, str] = {}
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
            raise BoxesFileError(f"{path}: a JSON object must be a COCO file with 'images' and 'annotations' lists")
        for i, image in enumerate(data["images"]):
            if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
                raise BoxesFileError(f"{path}: images[{i}] needs 'id' and a 'file_name' string")
            names[image["id"]] = image["file_name"]
        records = data["annotations"]
    elif isinstance(data, list):
        records = data
    else:
        raise BoxesFileError(f"{path}: expected a JSON list of boxes or a COCO file, got {type(data).__name__}")
    boxes: dict[str, list[list[float]]] = {}
    for i, record in enumerate(records):
        where = f"record {i}"
        if not isinstance(record, dict):
            raise BoxesFileError(f"{path}: {where} is {type(record).__name__}, not an object")
        bbox = record.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise BoxesFileError(f"{path}: {where}: field 'bbox' = {bbox!r} must be [x, y, w, h]")
        box = [_number(v, path, where, "bbox") for v in bbox]
        if box[2] <= 0 or box[3] <= 0:
            raise BoxesFileError(f"{path}: {where}: field 'bbox' = {bbox} has a non-positive width or height")
        if isinstance(record.get("file_name"), str):
            key = record["file_name"]
        elif "image_id" in record:
            image_id = record["image_id"]
            key = names.get(image_id, f"#{image_id}")
        else:
            raise BoxesFileError(f"{path}: {where} needs 'file_name' or 'image_id'")
        # An image whose every detection is below the threshold keeps an empty list: no animal there.
        entries = boxes.setdefault(key, [])
        if "score" not in record or _number(record["score"], path, where, "score") >= score_threshold:
            entries.append(box)
    return boxes


def boxes_for(image: Path, root: Path, boxes: dict[str, list[list[float]]]) -> list[list[float]] | None:
    """The boxes of one image file: by its path under ``root``, its name, or the number in its name."""
    relative = image.relative_to(root).as_posix() if root in image.parents else image.name
    for key in (relative, image.name):
        if key in boxes:
            return boxes[key]
    digits = re.fullmatch(r"0*(\d+)", image.stem)
    if digits is not None and f"#{int(digits.group(1))}" in boxes:
        return boxes[f"#{int(digits.group(1))}"]
    return None


def predict(cfg: DictConfig) -> dict[str, Any]:
    import cv2

    from clamp.files import output_path
    from clamp.predictor import Predictor
    from clamp.visualization import draw_pose

    source = Path(cfg.input)
    images = list_images(source, cfg.recursive)
    root = source if source.is_dir() else source.parent
    boxes = read_boxes(Path(cfg.boxes), cfg.box_score_threshold) if cfg.boxes else None
    predictor = Predictor.from_checkpoint(cfg.ckpt, device=cfg.device, flip_test=cfg.evaluation.flip_test,
                                          shift_heatmap=cfg.evaluation.shift_heatmap,
                                          score_threshold=cfg.evaluation.score_threshold,
                                          batch_size=cfg.batch_size, max_image_pixels=cfg.max_image_pixels)
    if predictor.demo_reason:
        print(f"note: this is a demo model ({predictor.demo_reason}); it cannot find keypoints on real photos")
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    results, skipped = [], []
    for path in images:
        name = path.relative_to(root).as_posix()
        image_boxes = None if boxes is None else boxes_for(path, root, boxes)
        try:
            rgb = predictor.read_image(path)
            animals = predictor.predict(rgb, image_boxes)
        except ClampError as err:
            log.warning("skipped %s: %s", name, err)
            skipped.append({"file_name": name, "reason": str(err)})
            continue
        drawing = rgb
        for animal in animals:
            drawing = draw_pose(drawing, animal.keypoints, predictor.keypoint_spec,
                                score_threshold=cfg.draw_threshold)
        drawing_path = output_path(output, name, ".pose.jpg")
        drawing_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(drawing_path), cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
        results.append({"file_name": name, "width": rgb.shape[1], "height": rgb.shape[0],
                        "drawing": drawing_path.relative_to(output.resolve()).as_posix(),
                        "animals": [animal.to_dict() for animal in animals]})
    report = {"model": predictor.describe(), "images": results, "skipped": skipped}
    (output / "predictions.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(results)} image(s) -> {output / 'predictions.json'}"
          + (f"; {len(skipped)} skipped (listed there)" if skipped else ""))
    return report


main = hydra_entry_point("predict", predict)

if __name__ == "__main__":
    main()
