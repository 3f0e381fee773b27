"""Keypoint metadata: the one declarative place every part of CLAMP reads.

A :class:`KeypointSpec` holds, for one dataset's skeleton, the keypoint names as they appear in
the annotation JSON, the words used in text prompts (Eq. 2), left/right flip pairs, OKS sigmas,
the drawing skeleton and which keypoints count as "upper body" for the half-body augmentation.
Sources: ``shared/docs/reference/datasets_and_eval.md`` (AP-10K: the corrected sigma list of
Dec 2021; Animal-Pose: mmpose order and values; COCO: the COCO keypoint challenge values).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clamp.errors import ClampError, MissingFileError, did_you_mean


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
    """Return a spec by registered name (``ap10k``, ``animalpose``, ``coco``), spec file, dict, or as is."""
    if isinstance(spec, KeypointSpec):
        return spec
    if isinstance(spec, Mapping):
        return KeypointSpec.from_dict(spec)
    if str(spec).lower().endswith(SPEC_FILE_SUFFIXES):
        return read_keypoint_spec(spec)
    try:
        return KEYPOINT_SPECS[spec]
    except KeyError:
        raise KeyError(
            f"Unknown keypoint spec '{spec}'. Known: {sorted(KEYPOINT_SPECS)}. "
            "For your own skeleton, pass a KeypointSpec (or its dict form)."
        ) from None


class KeypointUnionError(ClampError, ValueError):
    """A union of keypoint sets that cannot be built or does not cover a dataset; the message says why."""


@dataclass(frozen=True)
class KeypointUnion:
    """One output space for several datasets whose skeletons differ (multi-dataset training).

    ``spec`` is the union skeleton the model predicts (one prompt, one heatmap channel per meaning);
    ``members`` maps each member dataset's spec name to the union channel of each of its keypoints, in
    the member's own order, so that ``heatmaps[:, members[name]]`` are that dataset's K channels in its
    annotation order. A union channel a member does not map to is a keypoint it does not annotate.
    """

    spec: KeypointSpec
    members: Mapping[str, tuple[int, ...]]
    member_specs: Mapping[str, KeypointSpec]

    @property
    def name(self) -> str:
        return self.spec.name

    def channels(self, member: str | KeypointSpec) -> tuple[int, ...]:
        """The union channel of each keypoint of ``member`` (its name or spec), in the member's order."""
        name = member.name if isinstance(member, KeypointSpec) else member
        if name not in self.members:
            raise KeypointUnionError(
                f"keypoint union '{self.name}' has no member '{name}'; its members are {sorted(self.members)}"
            )
        if isinstance(member, KeypointSpec) and member.to_dict() != self.member_specs[name].to_dict():
            raise KeypointUnionError(
                f"keypoint union '{self.name}': the spec named '{name}' is not the one the union was built from"
            )
        return self.members[name]


def build_union(
    name: str, base: KeypointSpec, others: Sequence[tuple[KeypointSpec, Mapping[str, str]]]
) -> KeypointUnion:
    """The union of ``base`` and ``others``: ``base``'s keypoints first, in its order, then each other
    spec's keypoints that correspond to none before them, in that spec's order.

    Each of ``others`` comes with its correspondence ``{its keypoint name: union keypoint name}`` (a
    name of ``base`` or of an earlier member); only keypoints with the same meaning belong there, they
    share one channel, its prompt word and its OKS sigma (the first member's). Flip pairs and skeleton
    edges are the members' mapped into the union (two members must not pair a shared keypoint
    differently); a keypoint is upper body when a member that annotates it says so.
    """
    names = list(base.keypoint_names)
    words = list(base.prompt_words)
    sigmas = list(base.sigmas)
    members: dict[str, tuple[int, ...]] = {base.name: tuple(range(base.num_keypoints))}
    specs: dict[str, KeypointSpec] = {base.name: base}
    for spec, same in others:
        if spec.name in members:
            raise KeypointUnionError(f"keypoint union '{name}': member '{spec.name}' is given twice")
        unknown = sorted(set(same) - set(spec.keypoint_names))
        if unknown:
            raise KeypointUnionError(f"keypoint union '{name}': '{spec.name}' has no keypoint(s) {unknown}")
        targets = [same[k] for k in spec.keypoint_names if k in same]
        if len(set(targets)) != len(targets):
            raise KeypointUnionError(f"keypoint union '{name}': two '{spec.name}' keypoints map to one channel")
        channels = []
        for keypoint, word, sigma in zip(spec.keypoint_names, spec.prompt_words, spec.sigmas, strict=True):
            if keypoint in same:
                if same[keypoint] not in names:
                    raise KeypointUnionError(
                        f"keypoint union '{name}': '{spec.name}' keypoint '{keypoint}' maps to "
                        f"'{same[keypoint]}', which is not a keypoint of the union so far"
                    )
                channels.append(names.index(same[keypoint]))
                continue
            if keypoint in names or word in words:
                raise KeypointUnionError(
                    f"keypoint union '{name}': '{spec.name}' keypoint '{keypoint}' (prompt '{word}') is kept "
                    "apart but its name or prompt word is already taken; map it or rename it"
                )
            channels.append(len(names))
            names.append(keypoint)
            words.append(word)
            sigmas.append(sigma)
        members[spec.name] = tuple(channels)
        specs[spec.name] = spec
    partner: dict[int, int] = {}
    skeleton: list[tuple[int, int]] = []
    upper: set[int] = set()
    for member, spec in specs.items():
        to_union = members[member]
        for a, b in spec.flip_pairs:
            ua, ub = to_union[a], to_union[b]
            for u, v in ((ua, ub), (ub, ua)):
                if partner.setdefault(u, v) != v:
                    raise KeypointUnionError(
                        f"keypoint union '{name}': '{member}' flips '{names[u]}' with '{names[v]}' but an earlier "
                        f"member flips it with '{names[partner[u]]}'"
                    )
        for a, b in spec.skeleton:
            edge = (to_union[a], to_union[b])
            if edge not in skeleton and edge[::-1] not in skeleton:
                skeleton.append(edge)
        upper |= {to_union[i] for i in spec.upper_body_ids}
    for member, spec in specs.items():
        # A central keypoint of one member must not be a left/right one of another.
        central = {members[member][i] for i in range(spec.num_keypoints)} - {
            members[member][i] for pair in spec.flip_pairs for i in pair
        }
        flipped = sorted(names[u] for u in central if u in partner)
        if flipped:
            raise KeypointUnionError(f"keypoint union '{name}': '{member}' has no flip partner for {flipped}")
    union = KeypointSpec(
        name=name,
        keypoint_names=tuple(names),
        prompt_words=tuple(words),
        flip_pairs=tuple(sorted((u, v) for u, v in partner.items() if u < v)),
        sigmas=tuple(sigmas),
        skeleton=tuple(skeleton),
        upper_body_ids=tuple(sorted(upper)),
    )
    return KeypointUnion(union, members, specs)


# Animal-Pose keypoints with the same meaning as an AP-10K keypoint (reviewed against both datasets'
# definitions, shared/docs/reference/datasets_and_eval.md §1.3 and §2.2; the README's "Training on several
# datasets" has the table). Kept apart: Throat and Withers (AP-10K's neck is neither); the ear bases
# (AP-10K has no ears); Animal-Pose's elbows and knees against AP-10K's shoulders, elbows, hips and knees,
# whose placement AP-10K defines per species (its "hip" sits on the biological knee of hoofed and
# digitigrade animals, on the hip of plantigrade ones), so no one-to-one correspondence holds.
ANIMALPOSE_IN_AP10K: dict[str, str] = {
    "L_Eye": "left_eye",
    "R_Eye": "right_eye",
    "Nose": "nose",
    "TailBase": "root_of_tail",
    "L_F_Paw": "left_front_paw",
    "R_F_Paw": "right_front_paw",
    "L_B_Paw": "left_back_paw",
    "R_B_Paw": "right_back_paw",
}

AP10K_ANIMALPOSE = build_union("ap10k_animalpose", AP10K, [(ANIMALPOSE, ANIMALPOSE_IN_AP10K)])

KEYPOINT_UNIONS: dict[str, KeypointUnion] = {AP10K_ANIMALPOSE.name: AP10K_ANIMALPOSE}
# A union's spec is what a model trained on it predicts: registered like a dataset's, by name.
KEYPOINT_SPECS[AP10K_ANIMALPOSE.name] = AP10K_ANIMALPOSE.spec


def get_keypoint_union(union: str | KeypointUnion | Mapping[str, Any]) -> KeypointUnion:
    """A registered union by name (``ap10k_animalpose``), as is, or built from its dict form
    ``{name, base: spec, others: [{keypoints: spec, same: {their name: union name}}, ...]}``
    (specs by registered name or dict), e.g. for a COCO-format set of your own."""
    if isinstance(union, KeypointUnion):
        return union
    if isinstance(union, Mapping):
        unknown = sorted(set(union) - {"name", "base", "others"})
        if unknown or "name" not in union or "base" not in union:
            raise KeypointUnionError(
                f"a keypoint union is {{name, base, others: [{{keypoints, same}}]}}; got keys {sorted(union)}"
            )
        others = [
            (get_keypoint_spec(member["keypoints"]), dict(member.get("same") or {}))
            for member in union.get("others") or []
        ]
        return build_union(str(union["name"]), get_keypoint_spec(union["base"]), others)
    if union not in KEYPOINT_UNIONS:
        raise KeypointUnionError(
            f"unknown keypoint union '{union}'. Known: {sorted(KEYPOINT_UNIONS)}; or give one as "
            "{name, base, others: [{keypoints, same}]}"
        )
    return KEYPOINT_UNIONS[union]


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


# ---- keypoint specs of your own projects: names -> prompt words and flip pairs, spec files -----------
#: Suffixes of a keypoint spec file (``data.keypoints=path/keypoints.yaml``).
SPEC_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_SIDE_WORDS = {"l": "left", "left": "left", "r": "right", "right": "right"}
_OTHER_SIDE = {"left": "right", "right": "left"}
# Word boundaries inside a name: lower->Upper (earBase), Upper->Upper+lower (LEar), letter<->digit.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")


class KeypointSpecError(ClampError, ValueError):
    """A keypoint spec file that cannot be used; the message names the file, the field and the value."""


def name_words(name: str) -> list[str]:
    """The lower-case words of a body-part name: ``L_EarBase`` -> ``['l', 'ear', 'base']``."""
    return [w for w in re.split(r"[\s_\-.:/]+", _CAMEL.sub(" ", name).lower()) if w]


def prompt_word(name: str) -> str:
    """The prompt words (Eq. 2) for a body-part name: its words, the side first and spelled out.

    ``L_EarBase`` -> ``left ear base``, ``tailEnd`` -> ``tail end``, ``paw_r`` -> ``right paw``.
    """
    words = name_words(name)
    side = _side(name)
    if side is not None:
        words = [side[0], *(w for w in side[1] if w not in "<>")]
    return " ".join(words) or name


def _side(name: str) -> tuple[str, tuple[str, ...]] | None:
    """``("left", rest)`` when the name's first or last word says left (l) or right (r), else None."""
    words = name_words(name)
    if len(words) < 2:
        return None
    if words[0] in _SIDE_WORDS:
        return _SIDE_WORDS[words[0]], ("<", *words[1:])
    if words[-1] in _SIDE_WORDS:
        return _SIDE_WORDS[words[-1]], (*words[:-1], ">")
    return None


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...]]:
    """Left/right pairs from the names (left/right, l/r, ``L_``/``_R`` as a first or last word).

    Returns the pairs (left index first, in name order) and the names that say a side but have no
    partner of the other side (callers warn about those: they are not flipped).
    """
    sides = {i: s for i, s in ((i, _side(n)) for i, n in enumerate(names)) if s is not None}
    by_key = {(side, rest): i for i, (side, rest) in sides.items()}
    pairs, unpaired = [], []
    for i, (side, rest) in sides.items():
        partner = by_key.get((_OTHER_SIDE[side], rest))
        if partner is None:
            unpaired.append(names[i])
        elif side == "left":
            pairs.append((i, partner))
    return tuple(sorted(pairs)), tuple(unpaired)


def _index(value: Any, names: Sequence[str], where: str) -> int:
    """A keypoint given by name or 0-based index, as an index."""
    if isinstance(value, str):
        if value not in names:
            raise KeypointSpecError(f"{where}: '{value}' is not one of keypoint_names{did_you_mean(value, names)}")
        return names.index(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(names):
        raise KeypointSpecError(f"{where}: {value!r} is neither a keypoint name nor an index 0..{len(names) - 1}")
    return value


def read_keypoint_spec(path: str | os.PathLike) -> KeypointSpec:
    """A spec from a YAML/JSON file (as ``python -m clamp.data.convert`` writes it).

    ``flip_pairs``, ``skeleton`` and ``upper_body_ids`` may name keypoints or give 0-based indices;
    ``prompt_words`` defaults to :func:`prompt_word` of each name. Errors name the file and the field.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"keypoint spec file not found: {path} (write one with `python -m clamp.data.convert`, or name a "
            f"registered spec: {sorted(KEYPOINT_SPECS)})"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise KeypointSpecError(f"{path}: not valid YAML/JSON ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise KeypointSpecError(
            f"{path}: expected a mapping with keypoint_names, sigmas, ..., got {type(data).__name__}"
        )
    names = data.get("keypoint_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise KeypointSpecError(f"{path}: field 'keypoint_names' must be a non-empty list of names, got {names!r}")
    if len(set(names)) != len(names):
        raise KeypointSpecError(f"{path}: field 'keypoint_names' repeats a name: {names}")
    fields: dict[str, Any] = {"name": str(data.get("name") or path.stem), "keypoint_names": names}
    fields["prompt_words"] = data.get("prompt_words") or [prompt_word(n) for n in names]
    fields["sigmas"] = data.get("sigmas")
    for key in ("prompt_words", "sigmas"):
        if not isinstance(fields[key], list):
            raise KeypointSpecError(f"{path}: field '{key}' must be a list (one entry per keypoint)")
    for key in ("flip_pairs", "skeleton"):
        pairs = data.get(key) or []
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise KeypointSpecError(f"{path}: field '{key}' must be a list of [a, b] pairs, got {pairs!r}")
        fields[key] = [[_index(v, names, f"{path}: {key}[{i}]") for v in p] for i, p in enumerate(pairs)]
    upper = data.get("upper_body_ids") or []
    if not isinstance(upper, list):
        raise KeypointSpecError(f"{path}: field 'upper_body_ids' must be a list, got {upper!r}")
    fields["upper_body_ids"] = [_index(v, names, f"{path}: upper_body_ids[{i}]") for i, v in enumerate(upper)]
    try:
        return KeypointSpec.from_dict(fields)
    except (ValueError, TypeError) as err:
        raise KeypointSpecError(f"{path}: {err}") from None


def write_keypoint_spec(spec: KeypointSpec, path: str | os.PathLike, header: Sequence[str] = ()) -> Path:
    """Write ``spec`` as a YAML file that :func:`read_keypoint_spec` reads, pairs and skeleton by name.

    ``header`` lines become comments at the top (where the spec came from, what to check).
    """
    names = spec.keypoint_names

    def flow(value: Any) -> str:  # JSON is YAML: one readable line per value
        return json.dumps(value, ensure_ascii=False)

    def pairs(key: str, edges: Sequence[tuple[int, int]]) -> list[str]:
        return [f"{key}:" + ("" if edges else " []")] + [f"  - {flow([names[a], names[b]])}" for a, b in edges]

    lines = [f"# {line}" if line else "#" for line in header]
    lines += [f"name: {flow(spec.name)}", f"keypoint_names: {flow(list(names))}"]
    lines += [f"prompt_words: {flow(list(spec.prompt_words))}"]
    lines += ["# Mirror pairs: swapped when a training image is flipped. Check them (inferred from the names)."]
    lines += pairs("flip_pairs", spec.flip_pairs)
    lines += [f"sigmas: {flow(list(spec.sigmas))}"]
    lines += pairs("skeleton", spec.skeleton)
    lines += ["# The half-body augmentation crops the upper (these) or the other keypoints; [] crops all of them."]
    lines += [f"upper_body_ids: {flow([names[i] for i in spec.upper_body_ids])}"]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
