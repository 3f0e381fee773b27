"""notebooks/walkthrough.ipynb runs top to bottom (offline, untrained tiny model, fresh synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_notebook_runs_every_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAMP_ROOT", str(tmp_path))
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[{i}]", "exec"), namespace)
    assert namespace["predicted"].shape == (17, 3)
    assert namespace["m"].shape == (17, 17)


def test_the_dev_extra_brings_jupyter_and_every_requirement_is_pinned():
    import importlib.metadata
    import re

    import tomllib
    from packaging.requirements import Requirement

    root = NOTEBOOK.parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]

    def name(text: str) -> str:
        return re.sub(r"[-_.]+", "-", text).lower()

    dev = {name(Requirement(r).name) for r in project["optional-dependencies"]["dev"]}
    assert {"jupyterlab", "nbconvert", "ipykernel"} <= dev, "the walkthrough's `jupyter` commands (README)"
    pins = {
        name(line.split("==")[0]): line.split("==")[1].strip()
        for line in (root / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    unpinned = sorted(name(r.name) for r in wanted if name(r.name) not in pins)
    assert not unpinned, f"make install takes -c constraints.txt: pin {unpinned} (make lock)"
    for package in ("jupyterlab", "nbconvert", "ipykernel"):
        assert importlib.metadata.version(package) == pins[package], f"{package} is not the pinned version"
