"""The paper's figures from trained checkpoints:  python -m clamp.figures --ckpt CLAMP.ckpt --image cat.jpg --out DIR

* Fig. 3 (``fig3_feature_matching.png``): the similarity of the keypoint features (the dense joint-space
  features F sampled at the keypoints, rows) with the K prompt embeddings (columns), for the model
  before training (``--initial``: another checkpoint, e.g. an early one; default: the recipe rebuilt with
  random weights) and the trained one. The keypoints are the ground truth's (``--gt``) when given, else
  the trained model's predictions.
* Fig. 4 (``fig4_score_maps.png``): the score map S of every keypoint over the crop.
* Figs. 5-6 (``fig5_comparison.png``, only with ``--baseline``): SimpleBaseline beside CLAMP beside the
  ground truth (when ``--gt`` is given).

A demo model's figures (trained on synthetic data or from random CLIP weights, as ``make demo``'s) carry
the banner its predict drawings carry, on a strip above the figure.

The image is one animal framed by ``--box x y w h`` (default: the whole image), or the first annotated
animal of ``--gt`` (a COCO-keypoint file holding the image). ``--wandb`` also logs the figures to W&B
(``WANDB_MODE=offline`` works offline). Files are PNG; the paths are printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from clamp.errors import ClampError
from clamp.keypoints import KeypointSpec


def _crop(model, image: np.ndarray, box: Sequence[float]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The model's input crop of ``box``: the normalised tensor (1, 3, H, W), its centre and scale."""
    from clamp.data.transforms import TopDownTransform, box_to_center_scale

    transform = TopDownTransform(model.keypoint_spec, input_size=tuple(model.input_size), training=False)
    center, scale = box_to_center_scale(box, model.input_size[0] / model.input_size[1])
    sample = transform(image, np.zeros((model.keypoint_spec.num_keypoints, 3), np.float32), center, scale)
    return sample.image[None], center, scale


def feature_similarity(model, crop: torch.Tensor, keypoints_crop: np.ndarray) -> np.ndarray:
    """Fig. 3's matrix: cosine of F sampled (bilinearly) at each keypoint (rows) with each prompt (columns)."""
    from clamp.losses import keypoint_features

    with torch.no_grad():
        out = model(crop, return_aux=True)
    points = torch.as_tensor(keypoints_crop, dtype=torch.float32)[None]
    features = keypoint_features(
        out.dense_features, sampling="bilinear", keypoints=points, feature_stride=model.feature_stride
    )[0]
    features = torch.nn.functional.normalize(features, dim=-1)
    prompts = torch.nn.functional.normalize(out.prompt_embeddings[0], dim=-1)
    return (features @ prompts.T).numpy()


def draw_matrix(matrix: np.ndarray, spec: KeypointSpec, title: str, cell: int = 28) -> np.ndarray:
    """A K x K similarity matrix as a heat image, rows and columns labelled with the keypoint indices."""
    k = len(matrix)
    margin = 40
    low, high = float(matrix.min()), float(matrix.max())
    scaled = ((matrix - low) / max(high - low, 1e-6) * 255).astype(np.uint8)
    heat = cv2.applyColorMap(
        cv2.resize(scaled, (k * cell, k * cell), interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_VIRIDIS
    )
    canvas = np.full((k * cell + 2 * margin, k * cell + margin + 10, 3), 255, np.uint8)
    canvas[margin : margin + k * cell, margin : margin + k * cell] = heat
    for i in range(k):
        for text, origin in ((str(i), (margin + i * cell + 6, margin - 6)), (str(i), (8, margin + i * cell + 19))):
            cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(
        canvas,
        f"{title} (cos {low:.2f}..{high:.2f})",
        (margin, k * cell + margin + 25),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def _predict(model, crop: torch.Tensor, center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 3) keypoints in image pixels and in crop pixels, with flip test."""
    from clamp.codec import decode_keypoints
    from clamp.evaluation.decode import flip_test

    with torch.no_grad():
        heatmaps = flip_test(lambda x: model(x).heatmaps, crop, model.keypoint_spec.flip_index).numpy()
    image_xy = np.asarray(decode_keypoints(heatmaps, center[None], scale[None]))[0]
    crop_xy = np.asarray(decode_keypoints(heatmaps, input_size=model.input_size))[0]
    return image_xy, crop_xy


def _ground_truth(path: Path, image: Path, spec: KeypointSpec) -> tuple[list[float], np.ndarray]:
    """The first annotated animal of ``image`` in a COCO-keypoint file: its box and (K, 3) keypoints."""
    from clamp.data.coco import load_coco_keypoints

    data = load_coco_keypoints(path, spec, image_root=image.parent)
    for inst in data.instances:
        if Path(data.images[inst.image_id].file_name).name == image.name:
            return list(inst.bbox), np.asarray(inst.keypoints)
    raise ClampError(f"{path} annotates no animal in {image.name}")


def _to_crop(keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: Sequence[int]) -> np.ndarray:
    from clamp.data.transforms import affine_transform_points, get_affine_transform

    out = keypoints.copy()
    out[:, :2] = affine_transform_points(keypoints[:, :2], get_affine_transform(center, scale, 0.0, input_size))
    return out


def _initial_model(args: argparse.Namespace, trained):
    """The model before training: another checkpoint, or the trained recipe with random weights."""
    import clamp

    if args.initial is not None:
        return clamp.load_model(args.initial), "initial checkpoint"
    torch.manual_seed(0)
    return clamp.create_model(**trained.config).eval(), "random initialisation"


def make_figures(args: argparse.Namespace) -> list[Path]:
    """Write the figures the arguments ask for (module docstring); returns their paths."""
    from clamp.files import read_image_rgb
    from clamp.visualization import denormalize_image, draw_caption, draw_pose, draw_score_maps, side_by_side

    model, banner = _load(args.ckpt)
    if getattr(model, "logit_scale", None) is None:
        raise ClampError(
            f"{args.ckpt} is a {model.config['name']}: figures 3 and 4 need a CLAMP model "
            "(pass a SimpleBaseline as --baseline)"
        )
    spec = model.keypoint_spec
    image_path = Path(args.image)
    image = read_image_rgb(image_path)
    gt = None
    box = args.box or [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]
    if args.gt is not None:
        box, gt = _ground_truth(Path(args.gt), image_path, spec)
    crop, center, scale = _crop(model, image, box)
    predicted, predicted_crop = _predict(model, crop, center, scale)
    points = _to_crop(gt, center, scale, model.input_size) if gt is not None else predicted_crop
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    initial, initial_name = _initial_model(args, model)
    matrices = [
        draw_matrix(feature_similarity(m, crop, points[:, :2]), spec, name)
        for m, name in ((initial, initial_name), (model, "trained"))
    ]
    height = max(m.shape[0] for m in matrices)
    matrices = [np.pad(m, ((0, height - m.shape[0]), (0, 0), (0, 0)), constant_values=255) for m in matrices]
    written.append(_write(out / "fig3_feature_matching.png", side_by_side(*matrices), banner))

    with torch.no_grad():
        score_maps = model(crop, return_aux=True).score_maps[0].numpy()
    written.append(
        _write(
            out / "fig4_score_maps.png",
            draw_score_maps(denormalize_image(crop[0]), score_maps, spec, value_range=(-1.0, 1.0)),
            banner,
        )
    )

    if args.baseline is not None:  # the comparison of Figs. 5-6 needs the model compared with
        baseline, baseline_banner = _load(args.baseline)
        base_crop, base_center, base_scale = _crop(baseline, image, box)
        base_pose = _predict(baseline, base_crop, base_center, base_scale)[0]
        comparison = side_by_side(
            draw_caption(draw_pose(image, base_pose, baseline.keypoint_spec), "SimpleBaseline"),
            draw_caption(draw_pose(image, predicted, spec), "CLAMP"),
        )
        if gt is not None:
            comparison = side_by_side(comparison, draw_caption(draw_pose(image, gt, spec), "ground truth"))
        written.append(_write(out / "fig5_comparison.png", comparison, banner or baseline_banner))
    if args.wandb:
        _log_to_wandb(written)
    return written


def _load(path: str) -> tuple[torch.nn.Module, str | None]:
    """The network of a checkpoint and the banner of a demo model's pictures (None for a real model)."""
    from clamp.checkpoint import checkpoint_record, load_model, read_checkpoint
    from clamp.predictor import demo_caption

    checkpoint = read_checkpoint(path)
    model = load_model(checkpoint)
    return model, demo_caption(checkpoint_record(checkpoint, path)["provenance"], model.config["name"])


def _write(path: Path, image_rgb: np.ndarray, banner: str | None = None) -> Path:
    """Write a figure; a demo model's banner goes on a strip above it, where it hides nothing."""
    from clamp.visualization import draw_caption

    if banner:
        image_rgb = draw_caption(image_rgb, banner, above=True)
    cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    return path


def _log_to_wandb(paths: Sequence[Path]) -> None:
    import wandb

    run = wandb.init(project="clamp", job_type="figures", reinit=True)
    run.log({path.stem: wandb.Image(str(path)) for path in paths})
    run.finish()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clamp.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="the trained CLAMP checkpoint")
    parser.add_argument("--image", required=True, help="the image (one animal)")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--initial", help="checkpoint of the model before training, for Fig. 3")
    parser.add_argument("--baseline", help="a SimpleBaseline checkpoint, for Figs. 5-6")
    parser.add_argument("--gt", help="COCO-keypoint file annotating the image (box and keypoints)")
    parser.add_argument("--box", type=float, nargs=4, metavar=("X", "Y", "W", "H"), help="the animal's box")
    parser.add_argument("--wandb", action="store_true", help="also log the figures to W&B")
    args = parser.parse_args(argv)
    try:
        for path in make_figures(args):
            print(path)
    except ClampError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
