"""scripts/complexity.py (Table 7) on the tiny models: counting conventions, not the paper's numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "complexity.py"


@pytest.fixture(scope="module")
def complexity():
    spec = importlib.util.spec_from_file_location("complexity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameters_exclude_the_frozen_text_encoder_from_the_trainable_count(complexity):
    row = complexity.measure("clamp_tiny_rn")
    assert row["params_text_encoder"] > 0
    assert row["params_excluding_text_encoder"] == row["params_total"] - row["params_text_encoder"]
    assert row["params_trainable"] <= row["params_excluding_text_encoder"]


def test_paper_convention_gflops_leave_out_functional_attention(complexity):
    clamp, baseline = complexity.measure("clamp_tiny_vit"), complexity.measure("simplebaseline_tiny_vit")
    for row in (clamp, baseline):
        assert 0 < row["gflops"] < row["gflops_all"]
    # CLAMP adds the language side's (small) inference cost on top of its SimpleBaseline.
    assert clamp["gflops_all"] > baseline["gflops_all"]


def test_table_flags_rows_outside_the_tolerance(complexity):
    row = {
        "model": "clamp_rn50",
        "input_size": [256, 256],
        "params_excluding_text_encoder": 90e6,
        "params_text_encoder": 63e6,
        "gflops": 9.2,
        "gflops_all": 10.1,
    }
    assert complexity.format_table([row]).splitlines()[2].endswith("NO")
    row["params_excluding_text_encoder"] = 68e6
    assert complexity.format_table([row]).splitlines()[2].endswith("yes")


def test_json_rows_have_the_documented_keys(complexity, capsys, monkeypatch):
    monkeypatch.setattr(complexity, "MODELS", ("clamp_tiny_rn",))
    monkeypatch.setattr(
        complexity,
        "measure",
        lambda name: {
            "model": name,
            "params_total": 1,
            "params_trainable": 1,
            "gflops": 0.1,
            "gflops_all": 0.2,
            "seconds": 0.0,
        },
    )
    assert complexity.main(["--json", "--models", "clamp_tiny_rn"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert {"model", "params_total", "params_trainable", "gflops"} <= set(row)
