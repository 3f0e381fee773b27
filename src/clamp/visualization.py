"""Drawing poses and score maps (W&B previews, predictions on your photos and videos).

Keypoints are coloured by body side, read from the :class:`KeypointSpec`: a keypoint in a flip pair
is left or right by its name (``left_eye``, ``L_F_Paw``, ``EyeRight``), every other keypoint is
centre; an edge takes its side when both ends share it, else it is centre. Line widths, radii and
text grow with the image, so a 4000-px photo and a 64-px crop are both legible. Inputs are uint8
RGB images (H, W, 3) and keypoints (K, 3) = x, y, score in image pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

from clamp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from clamp.evaluation.postprocess import KEYPOINT_SCORE_THRESHOLD
from clamp.keypoints import KeypointSpec

Side = Literal["left", "right", "centre"]
Color = tuple[int, int, int]

# Okabe-Ito colours: told apart with the common colour-vision deficiencies too.
SIDE_COLORS: dict[Side, Color] = {
    "left": (230, 159, 0),  # orange
    "right": (86, 180, 233),  # sky blue
    "centre": (204, 121, 167),  # reddish purple
}
OUTLINE_COLOR: Color = (20, 20, 20)
TEXT_COLOR: Color = (255, 255, 255)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Fractional bits for cv2 drawing coordinates, so that points on small crops land at sub-pixel positions.
_SHIFT = 4
_LEFT_WORDS = {"left", "l", "lt"}
_RIGHT_WORDS = {"right", "r", "rt"}


def denormalize_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) ImageNet-normalised tensor -> (H, W, 3) uint8 RGB."""
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    rgb = array.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _name_words(name: str) -> list[str]:
    """``"L_F_Paw"`` -> ``["l", "f", "paw"]``; ``"EyeRight"`` -> ``["eye", "right"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def _side_from_name(name: str) -> Side | None:
    words = set(_name_words(name))
    left, right = bool(words & _LEFT_WORDS), bool(words & _RIGHT_WORDS)
    if left == right:
        return None
    return "left" if left else "right"


def keypoint_sides(spec: KeypointSpec) -> tuple[Side, ...]:
    """Body side of each keypoint: flip-pair members by their names, all others ``"centre"``.

    When the names of a pair do not tell (a custom skeleton with names like ``paw_a``), the pair's
    order decides: flip pairs are listed (left, right).
    """
    sides: list[Side] = ["centre"] * spec.num_keypoints
    for a, b in spec.flip_pairs:
        side_a, side_b = _side_from_name(spec.keypoint_names[a]), _side_from_name(spec.keypoint_names[b])
        if {side_a, side_b} == {"left", "right"}:
            sides[a], sides[b] = side_a, side_b
        else:
            sides[a], sides[b] = "left", "right"
    return tuple(sides)


def edge_sides(spec: KeypointSpec) -> tuple[Side, ...]:
    """Side of each skeleton edge: its ends' side when they share one, else ``"centre"``."""
    sides = keypoint_sides(spec)
    return tuple(sides[a] if sides[a] == sides[b] else "centre" for a, b in spec.skeleton)


@dataclass(frozen=True)
class DrawingSizes:
    """Pixel sizes of the marks for one image size (see :func:`drawing_sizes`)."""

    line_width: int
    radius: int
    outline: int
    font_scale: float
    font_thickness: int


def drawing_sizes(height: int, width: int) -> DrawingSizes:
    """Sizes proportional to the image's geometric-mean side, with floors that stay visible on crops."""
    side = math.sqrt(height * width)
    line_width = max(1, round(side / 160))
    font_scale = max(0.3, side / 800)
    return DrawingSizes(
        line_width=line_width,
        radius=max(2, round(side / 90)),
        outline=max(1, round(line_width / 3)),
        font_scale=font_scale,
        font_thickness=max(1, round(font_scale * 1.5)),
    )


def _fixed(x: float, y: float) -> tuple[int, int]:
    return round(x * (1 << _SHIFT)), round(y * (1 << _SHIFT))


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], sizes: DrawingSizes) -> None:
    """Text with a dark outline, readable on any background; ``origin`` is the baseline start."""
    cv2.putText(
        canvas,
        text,
        origin,
        _FONT,
        sizes.font_scale,
        OUTLINE_COLOR,
        sizes.font_thickness + 2 * sizes.outline,
        cv2.LINE_AA,
    )
    cv2.putText(canvas, text, origin, _FONT, sizes.font_scale, TEXT_COLOR, sizes.font_thickness, cv2.LINE_AA)


def _text_box(text: str, sizes: DrawingSizes) -> tuple[int, int, int]:
    """Width, height above the baseline and depth below it of outlined text."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, sizes.font_scale, sizes.font_thickness + 2 * sizes.outline)
    return width, height, baseline


def draw_caption(image_rgb: np.ndarray, caption: str, *, above: bool = False) -> np.ndarray:
    """Return a copy of ``image_rgb`` with ``caption`` on a dark banner across the top.

    The banner covers the image instead of growing it, so drawn video frames keep their size; the
    text shrinks to fit the width. ``above=True`` puts the banner on a dark strip added above the
    image instead (for pictures whose top carries labels, such as a score-map grid).
    """
    canvas = np.ascontiguousarray(image_rgb.copy())
    height, width = canvas.shape[:2]
    sizes = drawing_sizes(height, width)
    pad = max(2, sizes.radius // 2)
    text_width = _text_box(caption, sizes)[0]
    if text_width > width - 2 * pad:
        fitted_scale = sizes.font_scale * (width - 2 * pad) / text_width
        sizes = DrawingSizes(
            sizes.line_width, sizes.radius, sizes.outline, fitted_scale, max(1, round(fitted_scale * 1.5))
        )
    _, ascent, descent = _text_box(caption, sizes)
    banner_height = ascent + descent + 2 * pad
    if above:
        strip = np.full((banner_height, width, 3), OUTLINE_COLOR, dtype=np.uint8)
        canvas = np.ascontiguousarray(np.concatenate([strip, canvas], axis=0))
    else:
        banner = canvas[:banner_height]
        banner[:] = (banner * 0.35).astype(np.uint8)
    _put_text(canvas, caption, (pad, pad + ascent), sizes)
    return canvas


def draw_pose(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    spec: KeypointSpec,
    *,
    score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    color: Color | None = None,
    show_names: bool = False,
    radius: int | None = None,
    line_width: int | None = None,
    caption: str | None = None,
) -> np.ndarray:
    """Return a copy of ``image_rgb`` with the skeleton and keypoints drawn.

    Args:
        image_rgb: uint8 RGB image (H, W, 3).
        keypoints: (K, 3) x, y in image pixels and a score or visibility; points at or below
            ``score_threshold`` (unlabelled ground truth has v=0) or not finite are not drawn, nor
            the edges touching them.
        spec: the keypoints' names, flip pairs and skeleton.
        color: one colour for every mark instead of the side colours (e.g. to set ground truth apart
            from a prediction drawn beside it).
        show_names: write each drawn keypoint's name next to it.
        radius, line_width: point radius and edge width in pixels; default from the image size.
        caption: text for a banner across the top (see :func:`draw_caption`).
    """
    canvas = np.ascontiguousarray(image_rgb.copy())
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (spec.num_keypoints, 3):
        raise ValueError(f"keypoints must have shape ({spec.num_keypoints}, 3) for '{spec.name}', got {points.shape}")
    height, width = canvas.shape[:2]
    sizes = drawing_sizes(height, width)
    radius = radius or sizes.radius
    line_width = line_width or sizes.line_width
    point_colors = [color or SIDE_COLORS[side] for side in keypoint_sides(spec)]
    edge_colors = [color or SIDE_COLORS[side] for side in edge_sides(spec)]
    shown = np.isfinite(points).all(axis=1) & (points[:, 2] > score_threshold)
    centers = {i: _fixed(*points[i, :2]) for i in np.flatnonzero(shown)}

    edges = [(a, b, edge_color) for (a, b), edge_color in zip(spec.skeleton, edge_colors) if shown[a] and shown[b]]
    for a, b, _ in edges:
        cv2.line(canvas, centers[a], centers[b], OUTLINE_COLOR, line_width + 2 * sizes.outline, cv2.LINE_AA, _SHIFT)
    for a, b, edge_color in edges:
        cv2.line(canvas, centers[a], centers[b], edge_color, line_width, cv2.LINE_AA, _SHIFT)
    for i in np.flatnonzero(shown):
        cv2.circle(canvas, centers[i], (radius + sizes.outline) << _SHIFT, OUTLINE_COLOR, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, centers[i], radius << _SHIFT, point_colors[i], -1, cv2.LINE_AA, _SHIFT)
    if show_names:
        for i in np.flatnonzero(shown):
            name = spec.keypoint_names[i]
            text_width, ascent, _ = _text_box(name, sizes)
            x, y = points[i, :2]
            # Above right of the point, moved left / below where it would leave the image.
            text_x = int(x + radius) if x + radius + text_width < width else int(x - radius - text_width)
            text_y = int(y - radius) if y - radius - ascent > 0 else int(y + radius + ascent)
            _put_text(canvas, name, (max(0, text_x), text_y), sizes)
    return draw_caption(canvas, caption) if caption else canvas


def draw_score_maps(
    image_rgb: np.ndarray,
    score_maps: np.ndarray,
    spec: KeypointSpec | Sequence[str],
    *,
    value_range: tuple[float, float] | None = None,
    columns: int | None = None,
    panel_size: int = 256,
    alpha: float = 0.5,
    colormap: int = cv2.COLORMAP_JET,
    gap: int = 4,
) -> np.ndarray:
    """A grid of panels, one per keypoint: its score map upsampled onto the image as a heat overlay.

    Args:
        image_rgb: uint8 RGB (H, W, 3), the region the maps cover (the model's input crop).
        score_maps: (K, h, w), e.g. CLAMP's score maps ``PoseOutput.score_maps`` or the heatmaps.
        spec: the panel labels: a spec's keypoint names, or the names themselves.
        value_range: (low, high) mapped to the colormap's ends for every panel (e.g. (-1, 1) for cosine
            score maps); ``None`` stretches each map over its own min..max.
        columns: panels per row; default ceil(sqrt(K)).
        panel_size: the longer side of one panel in pixels (the image is resized to it).
        alpha: weight of the heat colours over the image.
        colormap: an OpenCV colormap.
        gap: white pixels between panels.
    """
    maps = np.asarray(score_maps, dtype=np.float32)
    labels = spec.keypoint_names if isinstance(spec, KeypointSpec) else tuple(spec)
    if maps.ndim != 3 or maps.shape[0] != len(labels):
        name = spec.name if isinstance(spec, KeypointSpec) else "the names"
        raise ValueError(f"score_maps must have shape ({len(labels)}, h, w) for '{name}', got {maps.shape}")
    height, width = image_rgb.shape[:2]
    factor = panel_size / max(height, width)
    panel_w, panel_h = max(1, round(width * factor)), max(1, round(height * factor))
    base = cv2.resize(image_rgb, (panel_w, panel_h), interpolation=cv2.INTER_AREA)
    columns = columns or math.ceil(math.sqrt(len(labels)))
    rows = math.ceil(len(labels) / columns)
    grid = np.full((rows * panel_h + (rows - 1) * gap, columns * panel_w + (columns - 1) * gap, 3), 255, np.uint8)
    map_h, map_w = maps.shape[1:]
    # Map cell i lands on panel pixel i * stride, the convention decoded keypoints use, not cell centres.
    to_panel = np.array([[panel_w / map_w, 0, 0], [0, panel_h / map_h, 0]], dtype=np.float64)
    for k, score_map in enumerate(maps):
        low, high = value_range or (float(score_map.min()), float(score_map.max()))
        unit = np.clip((score_map - low) / (high - low), 0, 1) if high > low else np.zeros_like(score_map)
        upsampled = cv2.warpAffine(
            unit, to_panel, (panel_w, panel_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        heat = cv2.cvtColor(cv2.applyColorMap(np.round(upsampled * 255).astype(np.uint8), colormap), cv2.COLOR_BGR2RGB)
        panel = draw_caption(cv2.addWeighted(base, 1 - alpha, heat, alpha, 0), labels[k])
        row, column = divmod(k, columns)
        top, left = row * (panel_h + gap), column * (panel_w + gap)
        grid[top : top + panel_h, left : left + panel_w] = panel
    return grid


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two equally tall RGB images next to each other with a white gap (prediction | ground truth)."""
    spacer = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)
