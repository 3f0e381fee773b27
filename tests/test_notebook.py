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
