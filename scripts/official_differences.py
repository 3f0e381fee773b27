"""The measured size of two differences from the official code (the README's differences section):
``python scripts/official_differences.py [--data DIR] [--epochs N] [--json OUT]``.

Coarse targets: how often the official coarse (feature-grid) target differs from the corrected one,
under the paper's augmentation.
For every labelled keypoint of every augmented training crop (256 px input, the paper's flip, half-body,
scale, rotation and centre jitter), the official target (mmpose's integer arithmetic, the default) and
the corrected one (peak at the rounded cell, weight 1 iff that cell is on the grid) are built on the RN50
(8x8) and ViT-B/16 (16x16) grids. Printed per grid: the share of labelled points whose selected cell or
weight differs, and the share that officially get weight 1 with no cell at 1 (L_feature then samples a
zero vector). The data is the synthetic AP-10K (generated on first use) unless ``--data`` names an
AP-10K-layout folder.

Weight decay: the trainable parameters of the paper's CLAMP RN50 and ViT-B/16 that the official optimiser
configs decay and ours do not (or the reverse). mmcv's ``paramwise_cfg`` matches substrings of the
parameter names: RN50 ``bias`` and ``norm`` take no decay, the ViTs ``norm`` only; ours exempts every
normalisation layer and bias (``model.no_weight_decay()``). Random weights: only the names and sizes count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from clamp.codec import HeatmapCodec
from clamp.data.coco import load_coco_keypoints
from clamp.data.dataset import TopDownDataset
from clamp.data.targets import COARSE_SIGMA_DIVISOR, keypoint_targets
from clamp.data.transforms import TopDownTransform
from clamp.synthetic import ensure_synthetic

PAPER_AUGMENTATION = {
    "flip_prob": 0.5,
    "half_body_prob": 0.3,
    "scale_factor": 0.5,
    "rotation_factor": 40,
    "rotation_prob": 0.6,
}
GRIDS = {"RN50 (8x8)": 8, "ViT-B/16 (16x16)": 16}


def peak_cells(heatmaps: np.ndarray) -> np.ndarray:
    """(K,) flat index of the cell at exactly 1 per channel, -1 where none is (what L_feature samples)."""
    flat = heatmaps.reshape(len(heatmaps), -1)
    return np.where((flat == 1.0).any(axis=1), (flat == 1.0).argmax(axis=1), -1)


def measure(root: Path, epochs: int, seed: int = 0) -> dict[str, dict[str, float]]:
    data = load_coco_keypoints(root / "annotations" / "ap10k-train-split1.json", "ap10k", image_root=root / "data")
    transform = TopDownTransform(data.spec, (256, 256), training=True, **PAPER_AUGMENTATION)
    dataset = TopDownDataset(data, transform, HeatmapCodec((256, 256), (64, 64)), seed=seed, center_jitter_prob=0.3)
    counts = {name: {"points": 0, "different": 0, "weight_without_peak": 0} for name in GRIDS}
    sigma = 2.0 / COARSE_SIGMA_DIVISOR
    for epoch in range(epochs):
        for index in range(len(dataset)):
            sample = dataset[(epoch, index)]
            if "skipped" in sample:
                continue
            keypoints = sample["keypoints"].numpy()
            labelled = keypoints[:, 2] > 0
            for name, grid in GRIDS.items():
                official, w_official = keypoint_targets(keypoints, (256, 256), (grid, grid), sigma, "official")
                corrected, w_corrected = keypoint_targets(keypoints, (256, 256), (grid, grid), sigma, "corrected")
                cell_o, cell_c = peak_cells(official), peak_cells(corrected)
                different = (w_official != w_corrected) | ((w_official > 0) & (cell_o != cell_c))
                c = counts[name]
                c["points"] += int(labelled.sum())
                c["different"] += int((different & labelled).sum())
                c["weight_without_peak"] += int(((w_official > 0) & (cell_o < 0) & labelled).sum())
    return {
        name: {
            "labelled_points": c["points"],
            "different_share": c["different"] / c["points"],
            "weight_without_peak_share": c["weight_without_peak"] / c["points"],
        }
        for name, c in counts.items()
    }


OFFICIAL_NO_DECAY = {"clamp_rn50": ("bias", "norm"), "clamp_vitb16": ("norm",)}


def weight_decay_differences() -> dict[str, dict[str, int]]:
    """Per model: trainable values, and those whose weight decay differs from the official config's."""
    import clamp

    report = {}
    for name, official_keys in OFFICIAL_NO_DECAY.items():
        model = clamp.create_model(name, keypoints="ap10k")
        ours_exempt = model.no_weight_decay()
        trainable = different = 0
        for param_name, param in model.named_parameters():
            if param.requires_grad:
                trainable += param.numel()
                official_exempt = any(key in param_name for key in official_keys)
                different += param.numel() if (param_name in ours_exempt) != official_exempt else 0
        report[name] = {"trainable": trainable, "different": different}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="AP-10K-layout folder (default: the synthetic AP-10K)")
    parser.add_argument("--epochs", type=int, default=3, help="augmented passes over the training set")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    root = args.data
    if root is None:
        root = Path("data/synthetic")
        ensure_synthetic(root, seed=0, num_train=800, num_val=100, num_test=100)
    report = measure(root, args.epochs)
    print(f"{'grid':<18} {'labelled points':>16} {'cell or weight differs':>24} {'weight 1, no peak':>18}")
    for name, row in report.items():
        print(
            f"{name:<18} {row['labelled_points']:>16,} {100 * row['different_share']:>23.1f}% "
            f"{100 * row['weight_without_peak_share']:>17.1f}%"
        )
    decay = weight_decay_differences()
    print(f"\n{'model':<18} {'trainable values':>16} {'weight decay differs':>24}")
    for name, row in decay.items():
        share = 100 * row["different"] / row["trainable"]
        print(f"{name:<18} {row['trainable']:>16,} {row['different']:>15,} ({share:.2f}%)")
    if args.json:
        args.json.write_text(json.dumps({"coarse_targets": report, "weight_decay": decay}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
