"""Synthetic data for offline runs and tests: drawn quadrupeds in the real datasets' file layouts.

``python -m clamp.synthetic --out DIR --dataset ap10k|animalpose|coco`` writes one; the data configs
``data=synthetic`` (and ``synthetic_animalpose``, ``synthetic_coco``) generate theirs on first use, into
their own folder (``data.generate.out``) only: nothing else writes a dataset.
"""

from clamp.synthetic.datasets import (
    LAYOUTS,
    SYNTHETIC_CONTRIBUTOR,
    annotation_path,
    ensure_synthetic,
    generate_synthetic,
    relabel,
    summarize_split,
)
from clamp.synthetic.render import SyntheticAnimal, SyntheticImage, render_synthetic_image

__all__ = [
    "LAYOUTS",
    "SYNTHETIC_CONTRIBUTOR",
    "SyntheticAnimal",
    "SyntheticImage",
    "annotation_path",
    "ensure_synthetic",
    "generate_synthetic",
    "relabel",
    "render_synthetic_image",
    "summarize_split",
]
