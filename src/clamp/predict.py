"""Keypoints for your own images: ``python -m clamp.predict ckpt=PATH input=images/``.

Each image (a file, or every .jpg/.jpeg/.png in a folder) is one animal framed by the whole image
unless ``boxes=boxes.json`` gives boxes: a JSON list of ``{"file_name": "a.jpg", "bbox": [x, y, w, h]}``
(several entries per image for several animals; COCO detection results with ``image_id`` work when
``file_name`` is given). Writes ``predictions.json`` (named keypoints with scores, per animal) and a
drawing ``<name>_pose.jpg`` per image into ``output``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from clamp.cli import CONFIG_PATH, UserInputError, run_entry_point

log = logging.getLogger("clamp.predict")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images
        raise UserInputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
    raise UserInputError(f"input not found: {path} (pass input=an image or a folder of images)")


def read_boxes(path: Path | None) -> dict[str, list[list[float]]]:
    """``file_name -> [bbox, ...]`` from a boxes JSON (empty: every image is one whole-frame box)."""
    if path is None:
        return {}
    if not path.is_file():
        raise UserInputError(f"boxes file not found: {path}")
    boxes: dict[str, list[list[float]]] = defaultdict(list)
    for i, entry in enumerate(json.loads(path.read_text())):
        if "file_name" not in entry or len(entry.get("bbox", [])) != 4:
            raise UserInputError(f"{path}: entry {i} needs 'file_name' and a 4-number 'bbox' [x, y, w, h]")
        boxes[Path(entry["file_name"]).name].append([float(v) for v in entry["bbox"]])
    return boxes


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    import cv2
    import numpy as np
    import torch

    from clamp.data.transforms import TopDownTransform, box_to_center_scale
    from clamp.evaluation.decode import decode_heatmaps, heatmap_to_image_coords, rescore
    from clamp.lightning.module import PoseEstimationModule
    from clamp.visualization import draw_pose

    images = list_images(Path(cfg.input))
    boxes = read_boxes(Path(cfg.boxes) if cfg.boxes else None)
    module = PoseEstimationModule.from_checkpoint(cfg.ckpt).eval()
    module.hparams.evaluation["flip_test"] = cfg.flip_test
    model, spec = module.model, module.keypoint_spec
    transform = TopDownTransform(spec, input_size=tuple(model.input_size), training=False)
    aspect = model.input_size[0] / model.input_size[1]
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    predictions = []
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserInputError(f"cannot read image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        crops, centers, scales = [], [], []
        for bbox in boxes.get(path.name, [[0.0, 0.0, float(width), float(height)]]):
            center, scale = box_to_center_scale(bbox, aspect)
            sample = transform(rgb, np.zeros((spec.num_keypoints, 3), np.float32), center, scale)
            crops.append(sample.image)
            centers.append(center)
            scales.append(scale)
        with torch.no_grad():
            heatmaps = module.predict_heatmaps(torch.stack(crops))
        coords, scores = decode_heatmaps(heatmaps.float().numpy())
        coords = heatmap_to_image_coords(coords, np.stack(centers), np.stack(scales), tuple(model.heatmap_size))
        instance_scores = rescore(scores, np.ones(len(scores)), cfg.score_threshold)
        drawing = rgb
        animals = []
        for xy, score, instance_score in zip(coords, scores, instance_scores):
            keypoints = np.concatenate([xy, score[:, None]], axis=1)
            drawing = draw_pose(drawing, keypoints, spec, score_threshold=cfg.score_threshold)
            animals.append({
                "keypoints": {name: [round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                              for name, (x, y, s) in zip(spec.keypoint_names, keypoints)},
                "score": float(instance_score),
            })
        cv2.imwrite(str(output / f"{path.stem}_pose.jpg"), cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
        predictions.append({"file_name": path.name, "width": width, "height": height, "animals": animals})
    (output / "predictions.json").write_text(json.dumps(predictions, indent=2) + "\n")
    log.info("wrote %d predictions and drawings to %s", len(predictions), output)
    print(f"{len(predictions)} image(s) -> {output / 'predictions.json'}")
    return predictions


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_entry_point(predict, cfg)


if __name__ == "__main__":
    main()
