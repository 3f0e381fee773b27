"""scripts/gpu_check.sh --device cpu --quick: the prepared GPU check runs every section on the CPU
(tiny models), so it cannot rot between the sessions that are lent a GPU. Timings are not judged."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out), "--train-seconds", "3"]
    command += ["--pipelines", "exact", "cached_uint8"]  # the train section: one real run per pipeline
    command += ["--budget-s", "3600"]  # nothing skipped for time, however loaded the machine is
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    result["_markdown"] = (out / "gpu_check.md").read_text()
    result["_stdout"] = done.stdout
    return result


def test_dependency_ranges_hold_where_the_check_runs(report) -> None:
    requirements = report["environment"]["requirements"]
    assert requirements and all(row["ok"] for row in requirements), [r for r in requirements if not r["ok"]]


def test_every_model_and_mode_has_a_measured_step_with_flops(report) -> None:
    rows = report["steps"] + [report["vitl14"]]
    assert [r["model"] for r in report["steps"]] == ["clamp_tiny_rn", "simplebaseline_tiny_rn"]
    for model in rows:
        assert not model["skipped"], model["skipped"]
        assert _positive(model["gflop_per_sample"])
        for row in model["modes"].values():
            assert _positive(row["samples_per_s"]) and _positive(row["mfu"]) and len(row["step_s"]) == 2
    assert set(report["steps"][0]["modes"]) == {"fp32", "bf16", "bf16+channels_last"}
    assert "compile" in report["skipped_sections"]  # on the CPU only with --compile


def test_parity_trains_a_model_and_eval_and_predict_agree(report) -> None:
    assert report["parity_training"]["exit"] == 0
    parity = report["parity"]
    assert all(command["exit"] == 0 for command in parity["commands"]), parity["commands"]
    assert parity["AP_equal"] is True
    for key in ("eval_keypoints", "predict_keypoints"):
        assert parity[key]["instances"] > 0 and parity[key]["max_abs_px"] == 0.0, parity[key]


def test_each_input_pipeline_trains_and_the_fast_ones_keep_keypoints(report) -> None:
    pipelines = report["pipeline"]["pipelines"]
    assert pipelines["exact"]["pixel_max"] == 0.0
    assert all(row["keypoints_equal"] for row in pipelines.values())
    assert pipelines["reduced_uint8"]["pixel_max"] == pipelines["reduced"]["pixel_max"]  # uint8 is exact
    for name, run in report["train"]["pipelines"].items():
        assert run["exit"] == 0, (name, run.get("log_tail"))
        assert run["epochs"] >= 1 and _positive(run["samples_per_s"]), run
    assert _positive(report["train"]["model_only_samples_per_s"])


def test_the_report_prints_its_tables(report) -> None:
    for needle in ("| model | input | mode |", "Real `python -m clamp.train`", "Input pipelines", "CPU vs device"):
        assert needle in report["_markdown"] and needle in report["_stdout"], needle
