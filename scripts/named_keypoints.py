"""What named keypoints (``Predictor.locate``) cost in precision: score-map peaks against the heatmap head.

::

    python scripts/named_keypoints.py --ckpt outputs/demo/checkpoints/last.ckpt --data data/synthetic

On a dataset's validation animals (ground-truth boxes), the mean distance to the ground truth of each
labelled keypoint, as a share of the box's longer side, for: the trained heatmap head (``predict``), the
score-map peaks of the trained prompt words (``locate`` with the spec's own words: exactly the trained
score maps) and of reworded names (``--reworded``: new words for the same body parts, unseen in training).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clamp.data.coco import load_coco_keypoints
from clamp.predictor import Predictor

#: New words for AP-10K body parts (index: words), none of them a trained prompt word.
REWORDED = {2: "snout", 4: "base of tail", 7: "left forepaw", 10: "right forepaw", 13: "left hind paw"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"), help="a synthetic AP-10K root")
    parser.add_argument("--limit", type=int, default=100, help="validation animals to use")
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint(args.ckpt, device="cpu")
    spec = predictor.keypoint_spec
    val = load_coco_keypoints(args.data / "annotations" / "ap10k-val-split1.json", spec)
    words = list(spec.prompt_words)
    reworded = list(REWORDED.values())
    errors: dict[str, list[float]] = {"heatmap head": [], "score maps, trained words": [], "score maps, new words": []}
    new_stand_in: list[bool] = []
    cell = []
    for instance in val.instances[: args.limit]:
        path = val.image_path(instance.image_id)
        box = list(instance.bbox)
        truth = np.asarray(instance.keypoints)
        labelled = truth[:, 2] > 0
        size = max(box[2], box[3])
        head = predictor.predict(path, boxes=[box])[0].keypoints
        located = predictor.locate(path, words + reworded, boxes=[box])[0]
        cell.append(max(located.cell_px) / size)
        peaks = located.peaks[: len(words)]
        errors["heatmap head"] += list(np.linalg.norm(head[labelled, :2] - truth[labelled, :2], axis=1) / size)
        errors["score maps, trained words"] += list(
            np.linalg.norm(peaks[labelled, :2] - truth[labelled, :2], axis=1) / size
        )
        new_peaks, new_stand_ins = located.peaks[len(words) :], located.stand_in[len(words) :]
        for k, peak, stand_in in zip(REWORDED, new_peaks, new_stand_ins):
            new_stand_in.append(stand_in == spec.keypoint_names[k])
            if labelled[k]:
                errors["score maps, new words"].append(float(np.linalg.norm(peak[:2] - truth[k, :2]) / size))
    grid = predictor.model.grid_size
    heatmap = predictor.model.heatmap_size
    print(
        f"{args.ckpt}: {min(args.limit, len(val.instances))} validation animals; feature grid {grid[0]}x{grid[1]}, "
        f"heatmap {heatmap[0]}x{heatmap[1]}; one grid cell = {np.mean(cell):.1%} of the box's longer side"
    )
    for name, values in errors.items():
        print(f"  {name:28s} mean error {np.mean(values):.1%} of the box's longer side ({len(values)} keypoints)")
    print(
        f"  new words standing in for their own body part: {np.mean(new_stand_in):.0%} "
        f"({', '.join(f'{w!r}->{spec.keypoint_names[k]}' for k, w in REWORDED.items())})"
    )


if __name__ == "__main__":
    main()
