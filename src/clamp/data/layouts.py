"""Where each dataset keeps its files: the one place the readers, the synthetic writers and the hints read.

``annotation`` and ``images`` are paths relative to the dataset root, with ``{split}`` for the file's own
split name (AP-10K's ``train``/``val``/``test`` of split 1, COCO's ``train``/``val`` of 2017). Image
``file_name`` values are relative to the image folder, except in mmpose's Animal-Pose conversion, where
they are relative to the root. The configs ``conf/data/{ap10k,animalpose,coco}.yaml`` name the same files
(a test keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetLayout:
    """The file layout of one dataset (module docstring) and how to obtain it."""

    annotation: str
    images: str
    names_relative_to_root: bool
    how_to_get: str

    def annotation_path(self, root: str | Path, split: str) -> Path:
        return Path(root) / self.annotation.format(split=split)

    def image_folder(self, root: str | Path, split: str) -> Path:
        """The folder image ``file_name`` values are relative to."""
        return Path(root) if self.names_relative_to_root else Path(root) / self.images.format(split=split)


LAYOUTS: dict[str, DatasetLayout] = {
    "ap10k": DatasetLayout(
        "annotations/ap10k-{split}-split1.json",
        "data",
        False,
        "AP-10K: unpack the official zip (link in github.com/AlexTheBad/AP-10K) so that "
        "<root>/annotations/ap10k-{train,val,test}-split{1,2,3}.json and the images <root>/data/*.jpg exist",
    ),
    "animalpose": DatasetLayout(
        "annotations/animalpose_{split}.json",
        "images",
        True,
        "Animal-Pose: run mmpose's tools/dataset_converters/parse_animalpose_dataset.py so that "
        "<root>/annotations/animalpose_{train,val}.json exists next to the image folders in <root>",
    ),
    "coco": DatasetLayout(
        "annotations/person_keypoints_{split}2017.json",
        "{split}2017",
        False,
        "COCO: put person_keypoints_{train,val}2017.json in <root>/annotations/ and the images in "
        "<root>/{train,val}2017/ (from cocodataset.org)",
    ),
}


def layout_of_annotation(path: Path) -> tuple[str, str] | None:
    """(dataset, split) of an annotation file at its layout's place, e.g. ``.../annotations/ap10k-val-split1.json``."""
    for name, layout in LAYOUTS.items():
        prefix, suffix = layout.annotation.split("{split}")
        relative = f"{path.parent.name}/{path.name}"
        if relative.startswith(prefix) and relative.endswith(suffix) and len(relative) > len(prefix) + len(suffix):
            return name, relative[len(prefix) : -len(suffix)]
    return None
