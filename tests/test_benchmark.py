"""scripts/benchmark.py --quick: the JSON's structure and that every figure is positive (never timings
against goals, which only the full benchmark on a quiet machine can judge)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"

FIGURES = (
    "infer_ratio",
    "infer_flop_ratio",
    "train_ratio",
    "train_flop_ratio",
    "train_flop_efficiency",
    "infer_time_per_flop",
    "train_time_per_flop",
    "train_conv_efficiency",
    "pipeline_overhead",
    "pipeline_ms_per_sample",
    "loader_samples_per_s",
    "load_slowdown",
    "eval_linearity",
    "train_peak_rss_gb",
)


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("clamp_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark") / "quick.json"
    assert benchmark.main(["--quick", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_benchmark_writes_every_headline_figure_positive(quick_run):
    missing = [key for key in FIGURES if key not in quick_run]
    assert not missing
    assert all(_positive(quick_run[key]) for key in FIGURES), {key: quick_run[key] for key in FIGURES}
    assert quick_run["quick"] is True and quick_run["schema"] == 1


def test_timed_figures_record_their_repetitions_and_medians(quick_run, benchmark):
    settings = benchmark.SETTINGS["quick"]
    ratios = quick_run["ratios"]
    for section, reps in (("infer", settings["infer_reps"]), ("train", settings["train_reps"])):
        for model in ("clamp", "simplebaseline"):
            entry = ratios[section][model]
            assert len(entry["seconds"]) == reps and all(_positive(s) for s in entry["seconds"])
            assert min(entry["seconds"]) <= entry["median_s"] <= max(entry["seconds"])
            assert _positive(entry["flops"])
        assert len(ratios[section]["pair_ratios"]) == reps
    infer = ratios["infer"]
    assert quick_run["infer_ratio"] == infer["clamp"]["median_s"] / infer["simplebaseline"]["median_s"]
    assert len(ratios["matmul"]["seconds"]) == settings["train_reps"] and _positive(ratios["matmul"]["flops_per_s"])
    pipeline = quick_run["pipeline"]
    assert len(pipeline["sample_s"]["seconds"]) == settings["pipeline_reps"] and pipeline["samples"] > 0
    assert set(pipeline["pipelines"]) == set(benchmark.PIPELINES)
    fastest = pipeline["pipelines"][pipeline["fastest"]]["cpu_ms_per_sample"]
    assert (
        quick_run["pipeline_ms_per_sample"]
        == fastest
        == min(p["cpu_ms_per_sample"] for p in pipeline["pipelines"].values())
    )
    assert quick_run["train_time_per_flop"] == ratios["train"]["ratio"] / ratios["train"]["flop_ratio"]
    assert _positive(ratios["conv"]["flops_per_s"]) and _positive(ratios["train_conv_efficiency"])
    for size in settings["eval_sizes"]:
        entry = quick_run["eval"][str(size)]
        assert entry["instances"] == size and _positive(entry["total_s"]["median_s"]) and 0 < entry["AP"] <= 1


def test_memory_throughput_and_backbone_rows_are_filled(quick_run, benchmark):
    memory = quick_run["memory"]
    assert memory["batch"] == benchmark.SETTINGS["quick"]["rss_batch"]
    assert memory["peak_gb"] >= memory["after_build_gb"] > 0
    load = quick_run["load"]
    assert _positive(load["alone_samples_per_s"]) and _positive(load["loaded_samples_per_s"])
    assert load["slowdown"] == load["alone_samples_per_s"] / load["loaded_samples_per_s"]
    labels = [r["label"] for r in quick_run["backbones"]]
    assert labels == list(benchmark.QUICK_BACKBONES)
    for r in quick_run["backbones"]:
        assert all(_positive(r[k]) for k in ("params_m", "params_text_m", "gflops", "gflops_all"))
        assert _positive(r["latency_ms"]["median_s"])


def test_report_records_environment_and_goal_verdicts(quick_run, benchmark):
    env = quick_run["environment"]
    assert env["device"] == "cpu" and env["torch_threads"] >= 1 and env["cpu_count"] >= 1
    assert {"python", "torch", "open_clip", "timm", "numpy"} <= set(env["versions"])
    for key, verdict in quick_run["goals"].items():
        assert key in benchmark.GOALS and isinstance(verdict["met"], bool) and verdict["value"] == quick_run[key]
    assert set(quick_run["section_s"]) == set(benchmark.SECTIONS)


def test_printed_table_shows_each_section(quick_run, benchmark):
    text = benchmark.format_report(quick_run)
    for needle in (
        "eval latency (s)",
        "train step (s)",
        "data:",
        "OKS evaluation",
        "peak RSS",
        "demo epoch",
        "time ratio / FLOP ratio",
        "backbone",
        "goals:",
    ):
        assert needle in text, needle
