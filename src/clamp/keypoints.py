"""Keypoint metadata: the one declarative place every part of CLAMP reads.

A :class:`KeypointSpec` holds, for one dataset's skeleton, the keypoint names as they appear in
the annotation JSON, the words used in text prompts (Eq. 2), left/right flip pairs, OKS sigmas,
the drawing skeleton and which keypoints count as "upper body" for the half-body augmentation.
Sources: ``shared/docs/reference/datasets_and_eval.md`` (AP-10K: the corrected sigma list of
Dec 2021; Animal-Pose: mmpose order and values; COCO: the COCO keypoint challenge values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class KeypointSpec:
    """Everything the code needs to know about one dataset's keypoints.

    Indices are 0-based channel indices; ``skeleton`` is 0-based too (the JSON files store it
    1-based). ``flip_pairs`` lists each left/right pair once.
    """

    name: str
    keypoint_names: tuple[str, ...]
    prompt_words: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        for field_name in ("prompt_words", "sigmas"):
            if len(getattr(self, field_name)) != k:
                raise ValueError(
                    f"KeypointSpec '{self.name}': {field_name} has {len(getattr(self, field_name))} "
                    f"entries but there are {k} keypoint names"
                )
        used: set[int] = set()
        for a, b in self.flip_pairs:
            if not (0 <= a < k and 0 <= b < k) or a == b or {a, b} & used:
                raise ValueError(f"KeypointSpec '{self.name}': invalid or repeated flip pair ({a}, {b})")
            used |= {a, b}
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"KeypointSpec '{self.name}': skeleton edge ({a}, {b}) out of range 0..{k - 1}")
        if any(not 0 <= i < k for i in self.upper_body_ids):
            raise ValueError(f"KeypointSpec '{self.name}': upper_body_ids out of range 0..{k - 1}")
        if any(s <= 0 for s in self.sigmas):
            raise ValueError(f"KeypointSpec '{self.name}': OKS sigmas must be positive")
        lower = tuple(i for i in range(k) if i not in set(self.upper_body_ids))
        object.__setattr__(self, "lower_body_ids", lower)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_index(self) -> tuple[int, ...]:
        """Permutation mapping each channel to its mirror channel (identity for central points)."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, stored in checkpoints so a model can be rebuilt without this module."""
        d = asdict(self)
        d.pop("lower_body_ids")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeypointSpec:
        return cls(
            name=str(d["name"]),
            keypoint_names=tuple(d["keypoint_names"]),
            prompt_words=tuple(d["prompt_words"]),
            flip_pairs=tuple(tuple(p) for p in d["flip_pairs"]),
            sigmas=tuple(float(s) for s in d["sigmas"]),
            skeleton=tuple(tuple(e) for e in d["skeleton"]),
            upper_body_ids=tuple(d["upper_body_ids"]),
        )


def _edges_from_one_based(pairs: list[list[int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


AP10K = KeypointSpec(
    name="ap10k",
    keypoint_names=(
        "left_eye",
        "right_eye",
        "nose",
        "neck",
        "root_of_tail",
        "left_shoulder",
        "left_elbow",
        "left_front_paw",
        "right_shoulder",
        "right_elbow",
        "right_front_paw",
        "left_hip",
        "left_knee",
        "left_back_paw",
        "right_hip",
        "right_knee",
        "right_back_paw",
    ),
    # The official CLAMP configs' class_names ("tail root", not "root of tail").
    prompt_words=(
        "left eye",
        "right eye",
        "nose",
        "neck",
        "tail root",
        "left shoulder",
        "left elbow",
        "left front paw",
        "right shoulder",
        "right elbow",
        "right front paw",
        "left hip",
        "left knee",
        "left back paw",
        "right hip",
        "right knee",
        "right back paw",
    ),
    flip_pairs=((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)),
    # Corrected order (AP-10K commit 417e1d6, mmpose >= 0.21); the CLAMP repo uses these.
    sigmas=(
        0.025,
        0.025,
        0.026,
        0.035,
        0.035,
        0.079,
        0.072,
        0.062,
        0.079,
        0.072,
        0.062,
        0.107,
        0.087,
        0.089,
        0.107,
        0.087,
        0.089,
    ),
    skeleton=_edges_from_one_based(
        [
            [1, 2],
            [1, 3],
            [2, 3],
            [3, 4],
            [4, 5],
            [4, 6],
            [6, 7],
            [7, 8],
            [4, 9],
            [9, 10],
            [10, 11],
            [5, 12],
            [12, 13],
            [13, 14],
            [5, 15],
            [15, 16],
            [16, 17],
        ]
    ),
    # mmpose marks R_F_Paw (10) as lower body but L_F_Paw (7) as upper; copied as-is for fidelity.
    upper_body_ids=(0, 1, 2, 3, 5, 6, 7, 8, 9),
)

ANIMALPOSE = KeypointSpec(
    name="animalpose",
    keypoint_names=(
        "L_Eye",
        "R_Eye",
        "L_EarBase",
        "R_EarBase",
        "Nose",
        "Throat",
        "TailBase",
        "Withers",
        "L_F_Elbow",
        "R_F_Elbow",
        "L_B_Elbow",
        "R_B_Elbow",
        "L_F_Knee",
        "R_F_Knee",
        "L_B_Knee",
        "R_B_Knee",
        "L_F_Paw",
        "R_F_Paw",
        "L_B_Paw",
        "R_B_Paw",
    ),
    prompt_words=(
        "left eye",
        "right eye",
        "left ear base",
        "right ear base",
        "nose",
        "throat",
        "tail base",
        "withers",
        "left front elbow",
        "right front elbow",
        "left back elbow",
        "right back elbow",
        "left front knee",
        "right front knee",
        "left back knee",
        "right back knee",
        "left front paw",
        "right front paw",
        "left back paw",
        "right back paw",
    ),
    flip_pairs=((0, 1), (2, 3), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19)),
    # mmpose values, including the 0.026/0.035 ear-base quirk, to stay comparable with published AP.
    sigmas=(
        0.025,
        0.025,
        0.026,
        0.035,
        0.035,
        0.10,
        0.10,
        0.10,
        0.107,
        0.107,
        0.107,
        0.107,
        0.087,
        0.087,
        0.087,
        0.087,
        0.089,
        0.089,
        0.089,
        0.089,
    ),
    skeleton=_edges_from_one_based(
        [
            [1, 2],
            [1, 3],
            [2, 4],
            [1, 5],
            [2, 5],
            [5, 6],
            [6, 8],
            [7, 8],
            [6, 9],
            [9, 13],
            [13, 17],
            [6, 10],
            [10, 14],
            [14, 18],
            [7, 11],
            [11, 15],
            [15, 19],
            [7, 12],
            [12, 16],
            [16, 20],
        ]
    ),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17),
)

COCO = KeypointSpec(
    name="coco",
    keypoint_names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    prompt_words=(
        "nose",
        "left eye",
        "right eye",
        "left ear",
        "right ear",
        "left shoulder",
        "right shoulder",
        "left elbow",
        "right elbow",
        "left wrist",
        "right wrist",
        "left hip",
        "right hip",
        "left knee",
        "right knee",
        "left ankle",
        "right ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=(
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ),
    skeleton=_edges_from_one_based(
        [
            [16, 14],
            [14, 12],
            [17, 15],
            [15, 13],
            [12, 13],
            [6, 12],
            [7, 13],
            [6, 7],
            [6, 8],
            [7, 9],
            [8, 10],
            [9, 11],
            [2, 3],
            [1, 2],
            [1, 3],
            [2, 4],
            [3, 5],
            [4, 6],
            [5, 7],
        ]
    ),
    upper_body_ids=tuple(range(11)),
)

KEYPOINT_SPECS: dict[str, KeypointSpec] = {spec.name: spec for spec in (AP10K, ANIMALPOSE, COCO)}


def get_keypoint_spec(spec: str | KeypointSpec | Mapping[str, Any]) -> KeypointSpec:
    """Return a spec by registered name (``ap10k``, ``animalpose``, ``coco``), dict, or as is."""
    if isinstance(spec, KeypointSpec):
        return spec
    if isinstance(spec, Mapping):
        return KeypointSpec.from_dict(spec)
    try:
        return KEYPOINT_SPECS[spec]
    except KeyError:
        raise KeyError(
            f"Unknown keypoint spec '{spec}'. Known: {sorted(KEYPOINT_SPECS)}. "
            "For your own skeleton, pass a KeypointSpec (or its dict form)."
        ) from None


@dataclass(frozen=True)
class Species:
    """One AP-10K category: species ``name`` and its ``family`` (the JSON ``supercategory``)."""

    id: int
    name: str
    family: str


# All 54 AP-10K categories exactly as in the official JSON (id, name, supercategory). The real
# annotation files carry this list too; the synthetic generator writes it so its files match.
AP10K_CATEGORIES: tuple[Species, ...] = tuple(
    Species(i, name, family)
    for i, (name, family) in enumerate(
        [
            ("antelope", "Bovidae"),
            ("argali sheep", "Bovidae"),
            ("bison", "Bovidae"),
            ("buffalo", "Bovidae"),
            ("cow", "Bovidae"),
            ("sheep", "Bovidae"),
            ("arctic fox", "Canidae"),
            ("dog", "Canidae"),
            ("fox", "Canidae"),
            ("wolf", "Canidae"),
            ("beaver", "Castoridae"),
            ("alouatta", "Cercopithecidae"),
            ("monkey", "Cercopithecidae"),
            ("noisy night monkey", "Cercopithecidae"),
            ("spider monkey", "Cercopithecidae"),
            ("uakari", "Cercopithecidae"),
            ("deer", "Cervidae"),
            ("moose", "Cervidae"),
            ("hamster", "Cricetidae"),
            ("elephant", "Elephantidae"),
            ("horse", "Equidae"),
            ("zebra", "Equidae"),
            ("bobcat", "Felidae"),
            ("cat", "Felidae"),
            ("cheetah", "Felidae"),
            ("jaguar", "Felidae"),
            ("king cheetah", "Felidae"),
            ("leopard", "Felidae"),
            ("lion", "Felidae"),
            ("panther", "Felidae"),
            ("snow leopard", "Felidae"),
            ("tiger", "Felidae"),
            ("giraffe", "Giraffidae"),
            ("hippo", "Hippopotamidae"),
            ("chimpanzee", "Hominidae"),
            ("gorilla", "Hominidae"),
            ("orangutan", "Hominidae"),
            ("rabbit", "Leporidae"),
            ("skunk", "Mephitidae"),
            ("mouse", "Muridae"),
            ("rat", "Muridae"),
            ("otter", "Mustelidae"),
            ("weasel", "Mustelidae"),
            ("raccoon", "Procyonidae"),
            ("rhino", "Rhinocerotidae"),
            ("marmot", "Sciuridae"),
            ("squirrel", "Sciuridae"),
            ("pig", "Suidae"),
            ("mole", "Talpidae"),
            ("black bear", "Ursidae"),
            ("brown bear", "Ursidae"),
            ("panda", "Ursidae"),
            ("polar bear", "Ursidae"),
            ("bat", "Vespertilionidae"),
        ],
        start=1,
    )
)
