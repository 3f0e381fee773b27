"""Cartoon quadrupeds with exact keypoints (AP-10K's 17), the images of every synthetic dataset.

Each image shows one to three animals of one species, drawn as a side view in the animal's own
frame and then mirrored (facing), rotated in-plane, scaled and placed on a cluttered background.
Conventions, chosen to match real AP-10K annotations (``shared/data/ap10k_mini``):

- Near side: an animal facing right shows its RIGHT side to the camera (and facing left its LEFT
  side), as in a photograph; the real fixture's two left-facing animals have only the left eye
  labelled. Near-side legs are drawn on top of the body, lighter and outlined; far-side legs behind
  it, darker and slightly higher (the camera looks slightly down). A horizontal flip of an image is
  therefore again a valid image with left and right swapped.
- Eyes: only the near eye is drawn; the far eye is always unlabelled (0, 0, 0).
- Self-occluded points (far shoulder/hip inside the body silhouette) stay labelled, as AP-10K
  labels points that can be inferred. Points outside the image or under an animal drawn later
  are unlabelled (0, 0, 0). Labelled points have v = 2 and integer coordinates, like AP-10K.
- ``bbox`` is the tight box of the animal's whole drawn silhouette clipped to the image,
  ``area`` = w * h.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from clamp.keypoints import AP10K, AP10K_CATEGORIES, Species

GENERATOR_VERSION = 1
"""Bump whenever the drawn images or annotations change, so cached datasets get regenerated."""

RGB = tuple[int, int, int]
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are passed as int(round(x * 16))
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class _Look:
    """Body plan and coat of one species; lengths are fractions of the body (ellipse) length."""

    body_h: float
    leg: float
    leg_w: float
    neck: float
    neck_angle: float  # degrees above the horizontal
    head: float  # head radius
    snout: float
    tail: float
    tail_w: float
    coats: tuple[RGB, ...]
    pattern: str = "plain"  # plain | stripes | spots
    pattern_rgb: RGB = (25, 20, 15)
    pattern_size: float = 0.03
    ears: str = "pointed"  # pointed | round | long | droopy
    extra: str = "none"  # none | horns | curled_horns | antlers | nose_horn | mane | hump
    hooves: bool = False


_BROWN, _BLACK, _WHITE, _GREY = (125, 80, 45), (35, 32, 30), (232, 228, 218), (128, 126, 122)
_LOOKS: dict[str, _Look] = {
    # name: body_h, leg, leg_w, neck, neck_angle, head, snout, tail, tail_w, then coat and extras
    "antelope": _Look(
        0.36, 0.78, 0.07, 0.30, 50, 0.10, 0.12, 0.14, 0.04, ((196, 150, 92), (178, 122, 70)), extra="horns", hooves=True
    ),
    "argali sheep": _Look(
        0.44,
        0.62,
        0.08,
        0.22,
        40,
        0.12,
        0.09,
        0.08,
        0.05,
        ((160, 132, 100), (140, 112, 85)),
        extra="curled_horns",
        hooves=True,
    ),
    "bison": _Look(
        0.54,
        0.52,
        0.11,
        0.12,
        10,
        0.15,
        0.07,
        0.22,
        0.03,
        ((82, 56, 36), (96, 66, 40)),
        ears="round",
        extra="hump",
        hooves=True,
    ),
    "buffalo": _Look(
        0.50,
        0.56,
        0.10,
        0.15,
        15,
        0.14,
        0.09,
        0.30,
        0.03,
        ((55, 50, 50), (75, 65, 60)),
        ears="droopy",
        extra="horns",
        hooves=True,
    ),
    "cow": _Look(
        0.50,
        0.56,
        0.10,
        0.18,
        20,
        0.13,
        0.10,
        0.45,
        0.025,
        ((238, 236, 230), (150, 90, 50)),
        pattern="spots",
        pattern_rgb=(30, 28, 28),
        pattern_size=0.09,
        ears="droopy",
        hooves=True,
    ),
    "sheep": _Look(
        0.56,
        0.45,
        0.07,
        0.14,
        30,
        0.11,
        0.08,
        0.10,
        0.06,
        ((236, 230, 212), (215, 205, 185)),
        ears="droopy",
        hooves=True,
    ),
    "dog": _Look(
        0.38,
        0.62,
        0.08,
        0.25,
        45,
        0.12,
        0.14,
        0.40,
        0.05,
        ((150, 100, 55), _BLACK, (215, 170, 95), _WHITE),
        ears="droopy",
    ),
    "fox": _Look(0.32, 0.46, 0.06, 0.20, 40, 0.11, 0.15, 0.62, 0.10, ((215, 112, 42), (200, 95, 35))),
    "wolf": _Look(0.38, 0.64, 0.08, 0.22, 35, 0.13, 0.15, 0.45, 0.08, ((132, 127, 118), (105, 100, 95))),
    "bobcat": _Look(
        0.36,
        0.48,
        0.08,
        0.12,
        35,
        0.13,
        0.05,
        0.12,
        0.05,
        ((172, 132, 92),),
        pattern="spots",
        pattern_rgb=(90, 60, 40),
        pattern_size=0.02,
    ),
    "cat": _Look(
        0.34,
        0.46,
        0.06,
        0.12,
        40,
        0.12,
        0.04,
        0.70,
        0.04,
        (_GREY, (210, 130, 60), _BLACK, _WHITE),
        pattern="stripes",
        pattern_rgb=(60, 55, 50),
        pattern_size=0.025,
    ),
    "cheetah": _Look(
        0.30, 0.64, 0.06, 0.14, 30, 0.11, 0.05, 0.70, 0.04, ((215, 172, 100),), pattern="spots", pattern_size=0.018
    ),
    "jaguar": _Look(
        0.40, 0.50, 0.09, 0.12, 25, 0.14, 0.06, 0.55, 0.05, ((205, 150, 70),), pattern="spots", pattern_size=0.035
    ),
    "king cheetah": _Look(
        0.30, 0.64, 0.06, 0.14, 30, 0.11, 0.05, 0.70, 0.04, ((212, 170, 105),), pattern="stripes", pattern_size=0.035
    ),
    "leopard": _Look(
        0.35, 0.52, 0.08, 0.13, 30, 0.13, 0.06, 0.68, 0.05, ((215, 170, 90),), pattern="spots", pattern_size=0.026
    ),
    "lion": _Look(0.38, 0.54, 0.09, 0.13, 30, 0.15, 0.07, 0.60, 0.04, ((200, 160, 92),), extra="mane", ears="round"),
    "panther": _Look(0.35, 0.52, 0.08, 0.13, 30, 0.13, 0.06, 0.68, 0.05, ((32, 30, 34),), ears="round"),
    "snow leopard": _Look(
        0.34,
        0.48,
        0.08,
        0.12,
        30,
        0.13,
        0.05,
        0.80,
        0.09,
        ((205, 205, 195),),
        pattern="spots",
        pattern_rgb=(80, 80, 80),
        pattern_size=0.03,
        ears="round",
    ),
    "tiger": _Look(
        0.36,
        0.52,
        0.09,
        0.13,
        30,
        0.14,
        0.06,
        0.65,
        0.05,
        ((228, 128, 38),),
        pattern="stripes",
        pattern_size=0.03,
        ears="round",
    ),
    "horse": _Look(
        0.44, 0.86, 0.08, 0.45, 55, 0.10, 0.22, 0.45, 0.07, (_BROWN, _BLACK, _WHITE, (160, 90, 45)), hooves=True
    ),
    "zebra": _Look(
        0.44,
        0.80,
        0.08,
        0.40,
        50,
        0.11,
        0.20,
        0.40,
        0.04,
        (_WHITE,),
        pattern="stripes",
        pattern_size=0.035,
        hooves=True,
    ),
    "hamster": _Look(
        0.62, 0.18, 0.10, 0.04, 20, 0.22, 0.06, 0.04, 0.04, ((222, 170, 100), (200, 150, 95)), ears="round"
    ),
    "deer": _Look(
        0.40,
        0.82,
        0.06,
        0.36,
        55,
        0.10,
        0.14,
        0.08,
        0.05,
        ((168, 110, 60),),
        pattern="spots",
        pattern_rgb=(240, 235, 225),
        pattern_size=0.02,
        extra="antlers",
        hooves=True,
    ),
    "moose": _Look(0.50, 0.86, 0.09, 0.24, 30, 0.14, 0.20, 0.06, 0.04, ((70, 50, 35),), extra="antlers", hooves=True),
    "brown bear": _Look(
        0.56, 0.46, 0.13, 0.12, 15, 0.16, 0.10, 0.04, 0.05, ((112, 72, 40), (95, 60, 35)), ears="round"
    ),
    "polar bear": _Look(0.54, 0.48, 0.13, 0.16, 15, 0.15, 0.11, 0.04, 0.05, ((238, 234, 215),), ears="round"),
    "giraffe": _Look(
        0.46,
        1.00,
        0.06,
        0.90,
        65,
        0.08,
        0.10,
        0.40,
        0.03,
        ((222, 172, 92),),
        pattern="spots",
        pattern_rgb=(120, 70, 35),
        pattern_size=0.06,
        extra="horns",
        hooves=True,
    ),
    "pig": _Look(
        0.50,
        0.30,
        0.09,
        0.05,
        10,
        0.15,
        0.12,
        0.10,
        0.03,
        ((236, 172, 160), (200, 140, 130)),
        ears="droopy",
        hooves=True,
    ),
    "rabbit": _Look(
        0.56, 0.30, 0.08, 0.06, 35, 0.15, 0.06, 0.06, 0.07, ((150, 140, 130), _WHITE, (140, 95, 60)), ears="long"
    ),
    "rat": _Look(0.40, 0.20, 0.06, 0.06, 20, 0.12, 0.12, 0.85, 0.025, ((110, 105, 100), (150, 140, 130)), ears="round"),
    "raccoon": _Look(0.46, 0.36, 0.08, 0.08, 25, 0.14, 0.09, 0.40, 0.09, ((125, 122, 118),), ears="round"),
    "rhino": _Look(
        0.56, 0.46, 0.13, 0.10, 10, 0.16, 0.16, 0.12, 0.03, ((128, 126, 120),), extra="nose_horn", hooves=True
    ),
}
_SPECIES_BY_NAME = {s.name: s for s in AP10K_CATEGORIES}
SYNTHETIC_SPECIES: tuple[Species, ...] = tuple(_SPECIES_BY_NAME[name] for name in _LOOKS)
"""The AP-10K categories that appear in the synthetic data (a subset of the 54 quadruped-like ones)."""
_FAMILIES: dict[str, tuple[Species, ...]] = {}
for _s in SYNTHETIC_SPECIES:
    _FAMILIES[_s.family] = _FAMILIES.get(_s.family, ()) + (_s,)

# Background codes as in AP-10K's README, each with a two-colour palette (RGB).
_BACKGROUNDS: dict[int, tuple[RGB, RGB]] = {
    1: ((110, 150, 60), (175, 170, 95)),  # grass/savanna
    2: ((45, 85, 45), (80, 115, 55)),  # forest/shrub
    3: ((120, 100, 80), (155, 145, 135)),  # mud/rock
    4: ((222, 228, 235), (185, 198, 215)),  # snowfield
    5: ((160, 160, 160), (125, 110, 100)),  # zoo/human habitation
    6: ((70, 100, 90), (90, 125, 145)),  # swamp/riverside
    7: ((210, 182, 132), (188, 160, 112)),  # desert/gobi
    8: ((200, 200, 205), (170, 175, 185)),  # mugshot
}

_KP = {name: i for i, name in enumerate(AP10K.keypoint_names)}
_SIDE_PARTS = ("eye", "shoulder", "elbow", "front_paw", "hip", "knee", "back_paw")


@dataclass(frozen=True)
class SyntheticAnimal:
    """One drawn animal: its annotation plus the facts tests need to check keypoint semantics."""

    species: Species
    keypoints: np.ndarray  # (17, 3) float32, AP-10K order, as annotated; unlabelled = (0, 0, 0)
    positions: np.ndarray  # (17, 2) float32, where all 17 points lie in the image, labelled or not
    upright_positions: np.ndarray  # (17, 2) float32, the same before the in-plane rotation
    facing_right: bool
    rotation_deg: float
    bbox: tuple[int, int, int, int]  # x, y, w, h of the silhouette, clipped to the image
    mask: np.ndarray  # (H, W) bool, the animal's whole silhouette (also parts hidden by later animals)


@dataclass(frozen=True)
class SyntheticImage:
    """A rendered image (BGR uint8, as cv2 writes it), its AP-10K background code and its animals."""

    image: np.ndarray
    background: int
    animals: list[SyntheticAnimal]


# ----------------------------------------------------------------------------------------------
# Geometry in the animal's own frame: facing +x, y down, body length 1.


@dataclass
class _Shape:
    points: np.ndarray  # (N, 2) polygon in the animal frame
    rgb: np.ndarray  # (3,) float
    textured: bool = False
    outline: np.ndarray | None = None  # rgb of a thin dark outline (near legs)


@dataclass
class _Body:
    back: list[_Shape]  # far legs and tail, behind the body
    torso: list[_Shape]  # body, neck, head (receives the coat pattern)
    front: list[_Shape]  # ears, horns, near legs
    pattern: list[np.ndarray]  # pattern polygons, clipped to the textured torso
    pattern_rgb: np.ndarray
    eye: np.ndarray  # near-eye centre
    eye_r: float
    nose: np.ndarray
    nose_r: float
    near: dict[str, np.ndarray]  # side keypoints by part name
    far: dict[str, np.ndarray]
    centre: dict[str, np.ndarray]  # nose, neck, root_of_tail


def _unit(deg: float) -> np.ndarray:
    return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


def _ellipse(c: np.ndarray, ax: float, ay: float, angle_deg: float = 0.0, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    pts = np.stack([ax * np.cos(t), ay * np.sin(t)], axis=1)
    u = _unit(angle_deg)
    rot = np.array([[u[0], -u[1]], [u[1], u[0]]])
    return pts @ rot.T + c


def _capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, n: int = 7) -> np.ndarray:
    """A tapered limb from p0 (radius r0) to p1 (radius r1)."""
    d = p1 - p0
    ang = math.atan2(d[1], d[0])
    a1 = ang + np.linspace(-math.pi / 2, math.pi / 2, n)
    a0 = ang + np.linspace(math.pi / 2, 3 * math.pi / 2, n)
    return np.concatenate(
        [p1 + r1 * np.stack([np.cos(a1), np.sin(a1)], 1), p0 + r0 * np.stack([np.cos(a0), np.sin(a0)], 1)]
    )


def _leg(rng: np.random.Generator, top: np.ndarray, length: float, front: bool) -> tuple[np.ndarray, np.ndarray]:
    """Middle joint and paw of one leg; angles from the vertical, positive = forward."""
    if front:
        a1 = rng.uniform(-25, 25)
        a2 = a1 + rng.uniform(-35, 15)
    else:
        a1 = rng.uniform(-10, 35)
        a2 = a1 - rng.uniform(15, 55)
    a1, a2 = (math.radians(float(np.clip(a, -55, 55))) for a in (a1, a2))
    mid = top + 0.5 * length * np.array([math.sin(a1), math.cos(a1)])
    paw = mid + 0.5 * length * np.array([math.sin(a2), math.cos(a2)])
    return mid, paw


def _ray_exit(start: np.ndarray, direction: np.ndarray, a: float, b: float) -> float:
    """Distance along `direction` (unit) from `start` (inside the ellipse) to the ellipse boundary."""
    qa = (direction[0] / a) ** 2 + (direction[1] / b) ** 2
    qb = 2 * (start[0] * direction[0] / a**2 + start[1] * direction[1] / b**2)
    qc = (start[0] / a) ** 2 + (start[1] / b) ** 2 - 1
    return (-qb + math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)


def _build_body(look: _Look, rng: np.random.Generator) -> _Body:
    """Sample one individual and pose of `look` and lay out its shapes and keypoints."""
    # Individual variation: every proportion within +-10% of the species' own.
    proportions = (look.body_h, look.leg, look.leg_w, look.head, look.snout, look.neck, look.tail)
    body_h, leg_len, leg_w, head, snout, neck_len, tail_len = (v * rng.uniform(0.9, 1.1) for v in proportions)
    a, b = 0.5, 0.5 * body_h
    coat = np.array(look.coats[rng.integers(len(look.coats))], float)
    coat = np.clip(coat + rng.uniform(-14, 14, 3), 0, 255)
    near_rgb, far_rgb = coat + (255 - coat) * 0.3, coat * 0.55
    outline_rgb = coat * 0.35
    paw_rgb = np.array([40.0, 34, 30]) if look.hooves else coat * 0.8
    # The camera looks slightly down on the animal, so far-side points appear higher and a little ahead.
    depth = np.array([0.05, -0.15 * body_h])

    near = {"shoulder": np.array([0.30, 0.25 * body_h]), "hip": np.array([-0.30, 0.20 * body_h])}
    far = {k: v + depth for k, v in near.items()}
    back: list[_Shape] = []
    front: list[_Shape] = []
    for side, store, rgb in (("far", far, far_rgb), ("near", near, near_rgb)):
        for top_name, mid_name, paw_name, is_front in (
            ("shoulder", "elbow", "front_paw", True),
            ("hip", "knee", "back_paw", False),
        ):
            top = store[top_name]
            mid, paw = _leg(rng, top, leg_len, is_front)
            store[mid_name], store[paw_name] = mid, paw
            w_top = leg_w * (1.5 if not is_front else 1.15)
            shapes = [
                _Shape(_capsule(top, mid, w_top / 2, leg_w * 0.38), rgb),
                _Shape(_capsule(mid, paw, leg_w * 0.38, leg_w * 0.3), rgb),
                _Shape(_ellipse(paw + np.array([0.01, 0.0]), leg_w * 0.5, leg_w * 0.35), paw_rgb),
            ]
            if side == "near":
                for s in shapes:
                    s.outline = outline_rgb
                front.extend(shapes)
            else:
                back.extend(shapes)

    # Tail: two segments from the back-top of the body, hanging down to sticking up.
    tail_root = np.array([a * math.cos(math.radians(205)), b * math.sin(math.radians(205))])
    t_dir = rng.uniform(-40, 70)
    t_mid = tail_root + 0.5 * tail_len * _unit(180 - t_dir)
    t_end = t_mid + 0.5 * tail_len * _unit(180 - t_dir - rng.uniform(-35, 35))
    back.append(_Shape(_capsule(tail_root, t_mid, look.tail_w * 0.5, look.tail_w * 0.45), coat * 0.85))
    back.append(_Shape(_capsule(t_mid, t_end, look.tail_w * 0.45, look.tail_w * 0.3), coat * 0.85))

    # Neck from inside the front-top of the body to the head; the keypoint is where it leaves the body.
    neck_angle = look.neck_angle + rng.normal(0, 8)
    neck_start = np.array([0.34, -0.1 * body_h])
    neck_dir = _unit(-neck_angle)
    neck_len_full = neck_len + 0.6 * head
    head_c = neck_start + neck_len_full * neck_dir
    neck_kp = neck_start + min(_ray_exit(neck_start, neck_dir, a, b), 0.5 * neck_len_full) * neck_dir
    pitch = rng.uniform(-25, 40)  # head direction, positive = nose down
    hd = _unit(pitch)
    up = np.array([hd[1], -hd[0]])
    snout_r = 0.5 * head
    nose = head_c + (0.75 * head + snout) * hd  # the snout's tip
    eye = head_c + 0.2 * head * hd + 0.42 * head * up
    neck_w = max(0.7 * head, 0.22 * body_h)

    torso = [_Shape(_ellipse(np.zeros(2), a, b, n=32), coat, True)]
    if look.extra == "hump":
        torso.append(_Shape(_ellipse(np.array([0.18, -0.78 * b]), 0.22, 0.45 * b), coat, True))
    torso.append(_Shape(_capsule(neck_start, head_c, neck_w / 2, 0.45 * neck_w), coat, True))
    if look.extra == "mane":
        torso.append(_Shape(_ellipse(head_c - 0.25 * head * hd, 1.75 * head, 1.55 * head, pitch), coat * 0.6))
    torso.append(_Shape(_ellipse(head_c, 1.05 * head, 0.85 * head, pitch), coat, True))
    torso.append(_Shape(_capsule(head_c + 0.3 * head * hd, nose, snout_r, 0.75 * snout_r), coat, True))

    def at(along: float, above: float) -> np.ndarray:
        """A point in the head's frame, in head radii along the head direction and above it."""
        return head_c + head * (along * hd + above * up)

    front_head = _head_extras(look, at, head, pitch, coat, nose_along=0.75 + snout / head)
    pattern = _pattern(look, rng, torso)
    near["eye"], far["eye"] = eye, eye + 0.5 * depth
    return _Body(
        back=back,
        torso=torso,
        front=front_head + front,
        pattern=pattern,
        pattern_rgb=np.array(look.pattern_rgb, float),
        eye=eye,
        eye_r=0.2 * head,
        nose=nose,
        nose_r=0.3 * snout_r,
        near=near,
        far=far,
        centre={"nose": nose, "neck": neck_kp, "root_of_tail": tail_root},
    )


def _head_extras(
    look: _Look, at: Callable[[float, float], np.ndarray], h: float, pitch: float, coat: np.ndarray, nose_along: float
) -> list[_Shape]:
    """Ears and horns/antlers, drawn over the head; `at` maps head-frame offsets to animal coordinates."""
    ear_rgb, horn_rgb = coat * 0.8, np.array([205.0, 195, 165])
    if look.ears == "pointed":
        shapes = [_Shape(np.stack([at(-0.65, 0.7), at(-0.05, 0.7), at(-0.5, 1.45)]), ear_rgb)]
    elif look.ears == "round":
        shapes = [_Shape(_ellipse(at(-0.35, 0.8), 0.28 * h, 0.28 * h, n=12), ear_rgb)]
    elif look.ears == "long":
        shapes = [_Shape(_capsule(at(-0.35, 0.7), at(-0.85, 2.1), 0.18 * h, 0.22 * h), ear_rgb)]
    else:  # droopy: hangs down the side of the head, behind the eye
        shapes = [_Shape(_capsule(at(-0.45, 0.5), at(-0.45, -0.25), 0.2 * h, 0.26 * h), coat * 0.7)]
    if look.extra == "horns":
        shapes.append(_Shape(_capsule(at(-0.1, 0.75), at(-0.7, 1.85), 0.14 * h, 0.05 * h), horn_rgb))
    elif look.extra == "curled_horns":
        shapes.append(_Shape(_ellipse(at(-0.55, 0.85), 0.55 * h, 0.5 * h, pitch, 16), horn_rgb * 0.8))
    elif look.extra == "antlers":
        base, tip = at(-0.1, 0.75), at(-0.6, 2.05)
        shapes.append(_Shape(_capsule(base, tip, 0.08 * h, 0.05 * h), horn_rgb * 0.75))
        for f in (0.45, 0.8):
            tine = base + f * (tip - base)
            shapes.append(_Shape(_capsule(tine, tine + at(0.35, 0.35) - at(0, 0), 0.06 * h, 0.04 * h), horn_rgb * 0.75))
    elif look.extra == "nose_horn":
        root = nose_along - 0.35 * (nose_along - 0.75)  # on the snout, a third of the way back from the nose
        shapes.append(
            _Shape(np.stack([at(root - 0.25, 0.25), at(root + 0.2, 0.25), at(root - 0.05, 0.95)]), horn_rgb * 0.85)
        )
    return shapes


def _pattern(look: _Look, rng: np.random.Generator, torso: list[_Shape]) -> list[np.ndarray]:
    """Stripe or spot polygons over the torso's bounding box (drawn only inside the torso)."""
    if look.pattern == "plain":
        return []
    pts = np.concatenate([s.points for s in torso])
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    size = look.pattern_size
    out: list[np.ndarray] = []
    if look.pattern == "stripes":
        x = x0 + rng.uniform(0, 2 * size)
        while x < x1:
            slant = rng.uniform(-0.08, 0.08)
            w = size * rng.uniform(0.5, 0.9)
            out.append(np.array([[x, y0], [x + w, y0], [x + w + slant, y1], [x + slant, y1]]))
            x += w + size * rng.uniform(1.0, 2.0)
    else:
        n = int((x1 - x0) * (y1 - y0) / (size * size * 7))
        for c, r in zip(rng.uniform((x0, y0), (x1, y1), (n, 2)), rng.uniform(0.6, 1.2, n) * size):
            out.append(_ellipse(c, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 180), 10))
    return out


# ----------------------------------------------------------------------------------------------
# Rendering.


def _to_px(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _bgr(rgb: np.ndarray) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def _affine(points: np.ndarray, lin: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return points @ lin.T + offset


def _draw_animal(
    body: _Body, lin: np.ndarray, offset: np.ndarray, scale: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one animal on its own layer; returns (BGR layer, silhouette mask uint8)."""
    layer = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    textured = np.zeros((size, size), np.uint8)

    def fill(shapes: list[_Shape]) -> None:
        for s in shapes:
            pts = _to_px(_affine(s.points, lin, offset))
            if s.outline is not None:
                # Drawn first and filled over, so that thin legs keep their light inside.
                cv2.polylines(layer, [pts], True, _bgr(s.outline), 2, cv2.LINE_8, _SHIFT)
                cv2.polylines(mask, [pts], True, 255, 2, cv2.LINE_8, _SHIFT)
            cv2.fillPoly(layer, [pts], _bgr(s.rgb), cv2.LINE_8, _SHIFT)
            cv2.fillPoly(mask, [pts], 255, cv2.LINE_8, _SHIFT)
            cv2.fillPoly(textured, [pts], 255 if s.textured else 0, cv2.LINE_8, _SHIFT)

    fill(body.back)
    fill(body.torso)
    if body.pattern:
        patterned = layer.copy()
        polygons = [_to_px(_affine(p, lin, offset)) for p in body.pattern]
        cv2.fillPoly(patterned, polygons, _bgr(body.pattern_rgb), cv2.LINE_8, _SHIFT)
        np.copyto(layer, patterned, where=textured[..., None] > 0)
    textured[:] = 0
    fill(body.front)

    def dot(c: np.ndarray, radius: float, rgb: tuple[int, int, int]) -> None:
        centre = tuple(int(v) for v in _to_px(_affine(c[None], lin, offset)).ravel())
        cv2.circle(layer, centre, int(round(radius * _ONE)), rgb, -1, cv2.LINE_8, _SHIFT)

    eye_r = max(2.0, body.eye_r * scale)
    dot(body.eye, eye_r, (225, 235, 240))
    dot(body.eye, max(1.0, 0.6 * eye_r), (15, 15, 15))
    dot(body.nose, max(1.5, body.nose_r * scale), (30, 25, 25))
    return layer, mask


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    code = int(rng.integers(1, 9))
    c0, c1 = (np.array(c, float) + rng.uniform(-20, 20, 3) for c in _BACKGROUNDS[code])
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    img = (c0 * (1 - t) + c1 * t)[:, :, ::-1]  # vertical gradient, RGB -> BGR
    img = np.clip(np.broadcast_to(img, (size, size, 3)), 0, 255).astype(np.uint8)
    n_shapes = int(rng.integers(1, 4)) if code == 8 else int(rng.integers(4, 13))
    for _ in range(n_shapes):
        colour = _bgr(np.clip((c0 if rng.random() < 0.5 else c1) + rng.uniform(-45, 45, 3), 0, 255))
        p = rng.uniform(0, size, 2).astype(int)
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(img, (int(p[0]), int(p[1])), int(rng.uniform(0.03, 0.15) * size), colour, -1)
        elif kind == 1:
            q = p + rng.uniform(-0.3, 0.3, 2) * size
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, -1)
        else:
            q = p + rng.uniform(-0.4, 0.4, 2) * size
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, int(rng.integers(1, 5)))
    return img, code


def _assign_sides(body: _Body, near_is_left: bool) -> np.ndarray:
    """(17, 2) keypoints in the animal frame, in AP-10K order."""
    kps = np.zeros((AP10K.num_keypoints, 2))
    near_side, far_side = ("left", "right") if near_is_left else ("right", "left")
    for part in _SIDE_PARTS:
        kps[_KP[f"{near_side}_{part}"]] = body.near[part]
        kps[_KP[f"{far_side}_{part}"]] = body.far[part]
    for name, p in body.centre.items():
        kps[_KP[name]] = p
    return kps


@dataclass
class _Placed:
    """An animal placed in the image, before compositing."""

    kps: np.ndarray  # (17, 2) image positions
    upright: np.ndarray  # (17, 2) the same without the in-plane rotation
    layer: np.ndarray
    mask: np.ndarray  # bool silhouette
    facing_right: bool
    rotation: float
    hidden_by_later: np.ndarray  # (17,) bool, under an animal drawn later


def _accept(kps: np.ndarray, mask: np.ndarray, placed: list[_Placed], size: int) -> bool:
    """Whether a new animal is well in frame and leaves every earlier animal clearly identifiable."""
    if _in_frame(kps, size).sum() < 12:
        return False
    for p in placed:
        if (p.mask & (mask > 0)).sum() > 0.3 * p.mask.sum():
            return False
        xy = np.clip(np.rint(p.kps), 0, size - 1).astype(int)
        still_seen = _in_frame(p.kps, size) & ~p.hidden_by_later & (mask[xy[:, 1], xy[:, 0]] == 0)
        if still_seen.sum() < 10:
            return False
    return True


def _in_frame(kps: np.ndarray, size: int) -> np.ndarray:
    xy = np.rint(kps)
    return ((xy >= 0) & (xy <= size - 1)).all(1)


def render_synthetic_image(rng: np.random.Generator, image_size: int = 256) -> SyntheticImage:
    """Draw one image with 1-3 animals of one species and return it with its annotations.

    Everything is drawn from ``rng``, so the same generator state gives the same image.
    """
    species = _sample_species(rng)
    look = _LOOKS[species.name]
    img, background = _background(rng, image_size)
    n_wanted = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    size_range = {1: (0.45, 0.9), 2: (0.35, 0.6), 3: (0.28, 0.5)}[n_wanted]
    far_eye = {True: _KP["left_eye"], False: _KP["right_eye"]}

    placed: list[_Placed] = []
    for k in range(n_wanted):
        body = _build_body(look, rng)
        facing_right = bool(rng.random() < 0.5)
        rotation = float(np.clip(rng.normal(0, 10), -25, 25))
        # Mirror the animal frame for a left-facing animal, then rotate in-plane.
        flip = np.diag([1.0 if facing_right else -1.0, 1.0])
        c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
        rot_flip = np.array([[c, -s], [s, c]]) @ flip
        # A photograph of a right-facing animal shows its right side (see module docstring).
        kps_local = _assign_sides(body, near_is_left=not facing_right)
        outline = np.concatenate([sh.points for sh in body.back + body.torso + body.front]) @ rot_flip.T
        lo, hi = outline.min(0), outline.max(0)
        for attempt in range(15):
            fallback = k == 0 and attempt == 14
            scale = rng.uniform(*size_range) * image_size / float((hi - lo).max())
            extent = (hi - lo) * scale
            # Up to 12% of the animal may leave the frame, except in the first animal's last attempt.
            margin = 0.0 if fallback else 0.12
            corner = rng.uniform(-margin * extent, image_size - extent + margin * extent)
            lin, offset = rot_flip * scale, corner - lo * scale
            kps = _affine(kps_local, lin, offset)
            layer, mask = _draw_animal(body, lin, offset, scale, image_size)
            if fallback or _accept(kps, mask, placed, image_size):
                for p in placed:
                    xy = np.clip(np.rint(p.kps), 0, image_size - 1).astype(int)
                    p.hidden_by_later |= mask[xy[:, 1], xy[:, 0]] > 0
                placed.append(
                    _Placed(
                        kps=kps,
                        upright=_affine(kps_local, flip * scale, offset),
                        layer=layer,
                        mask=mask > 0,
                        facing_right=facing_right,
                        rotation=rotation,
                        hidden_by_later=np.zeros(len(kps), bool),
                    )
                )
                break
        else:
            break  # no room for another animal without hiding the others

    animals = []
    for p in placed:
        np.copyto(img, p.layer, where=p.mask[..., None])
        labelled = _in_frame(p.kps, image_size) & ~p.hidden_by_later
        labelled[far_eye[p.facing_right]] = False
        keypoints = np.zeros((len(labelled), 3), np.float32)
        keypoints[labelled, :2] = np.rint(p.kps[labelled])
        keypoints[labelled, 2] = 2
        x, y, w, h = cv2.boundingRect(p.mask.astype(np.uint8))
        animals.append(
            SyntheticAnimal(
                species=species,
                keypoints=keypoints,
                positions=p.kps.astype(np.float32),
                upright_positions=p.upright.astype(np.float32),
                facing_right=p.facing_right,
                rotation_deg=p.rotation,
                bbox=(x, y, w, h),
                mask=p.mask,
            )
        )
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    noise = rng.normal(0.0, rng.uniform(2, 8), img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return SyntheticImage(image=img, background=background, animals=animals)


def _sample_species(rng: np.random.Generator) -> Species:
    # Family first, so that one-species families (Cricetidae) are as common as big ones (Felidae).
    family = sorted(_FAMILIES)[int(rng.integers(len(_FAMILIES)))]
    members = _FAMILIES[family]
    return members[int(rng.integers(len(members)))]
