"""Our runs laid out as the paper's tables (python -m clamp.tables DIR ...)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from clamp.tables.__main__ import main
from clamp.tables.paper import format_value, load_paper_tables
from clamp.tables.runs import find_runs, layout, row_key, wandb_runs
from tests.helpers import compose_train, run_cli
from tests.test_configs import sweep_jobs

TABLES = load_paper_tables()


def fake_runs(root: Path, experiment: str, *extra: str, ap: float = 0.5) -> Path:
    """One run folder per job of a table's sweep, with its real composed config and made-up metrics."""
    for number, job in enumerate(sweep_jobs(experiment)):
        cfg = compose_train([*job, *extra, f"paths.output_dir={root / str(number)}"])
        (root / str(number)).mkdir(parents=True)
        (root / str(number) / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        metrics = {k: ap + 0.01 * number for k in ("AP", "AP50", "AP75", "APM", "APL", "AR")}
        (root / str(number) / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.mark.parametrize("number", [1, 2, 3, 4, 6, 8, 9, 10, 11])
def test_every_row_of_a_table_sweep_lands_on_its_paper_row(tmp_path, number):
    table = TABLES[number]
    runs = find_runs([fake_runs(tmp_path, table.experiment)])
    header, rows = layout(table, runs)
    assert len(rows) == len(table.rows)  # nothing unmatched, nothing missing
    for row, paper in zip(rows, table.rows):
        cells = row[len(table.label_columns) + 1 :]
        for cell, column in zip(cells, table.columns):
            assert f"({format_value(paper.values[column])}, " in cell, (row, column)
    if number == 11:  # three seeds per cell
        assert all("(n=3)" in cell for row in rows for cell in row[4:])


def test_a_smoke_run_is_labelled_as_the_tiny_model_it_is(tmp_path):
    runs = find_runs([fake_runs(tmp_path, "table2", "+debug=smoke")])
    header, rows = layout(TABLES[2], runs)
    ran = {" ".join(row[:3]): row[3] for row in rows}
    assert ran["SimpleBaseline [32] ResNet-50 ImageNet"].startswith("simplebaseline_tiny_rn_imagenet, random weights")
    assert ran["SimpleBaseline [32] ResNet-50 CLIP"].startswith("simplebaseline_tiny_rn, random weights")
    vit = ran["CLAMP (ours) ViT-Base CLIP"]
    assert "synthetic data" in vit and "clamp_tiny_vit" in vit
    assert "drop_path_rate" not in vit  # the backbone's own training default is no switch


def test_a_departure_from_the_backbone_recipe_is_shown_in_the_label():
    from clamp.tables.runs import ran

    config = OmegaConf.to_container(
        compose_train(["model.overrides.drop_path_rate=0.1", "paths.output_dir=x"]), resolve=True
    )
    assert ran(config).endswith("drop_path_rate=0.1")
    assert "drop_path_rate" not in ran(OmegaConf.to_container(compose_train(["paths.output_dir=x"]), resolve=True))


def test_missing_rows_show_the_paper_only_and_extra_runs_are_added(tmp_path):
    fake_runs(tmp_path, "table3")
    for job in (tmp_path / "0", tmp_path / "1"):  # two rows never finished
        (job / "metrics.json").unlink()
    config = OmegaConf.to_yaml(
        compose_train(
            ["+experiment=zeroshot", "split.train_family=Ursidae", "split.test_family=Felidae", "paths.output_dir=x"]
        ),
        resolve=True,
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text(config)
    (tmp_path / "mine" / "metrics.json").write_text(json.dumps({"AP": 0.3, "AR": 0.4}))
    header, rows = layout(TABLES[3], find_runs([tmp_path]))
    assert sum(row[5].startswith("— (") for row in rows) == 2  # 4 label columns, "ran", then AP
    assert rows[-1][:2] == ["clamp_rn50", "ursidae_felidae"] and rows[-1][5] == "30.0"


def test_the_cli_lays_out_a_multirun_folder_and_fails_cleanly(tmp_path, capsys):
    fake_runs(tmp_path / "multirun", "table6")
    assert main([str(tmp_path / "multirun"), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "(72.9, " in out and "Lspatial" in out
    assert main([str(tmp_path / "empty")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_table_7_comes_from_the_complexity_report(tmp_path, capsys):
    report = [
        {"model": "clamp_rn50", "params_excluding_text_encoder": 67.6e6, "gflops": 9.21},
        {"model": "simplebaseline_rn50", "params_excluding_text_encoder": 48.8e6, "gflops": 8.96},
    ]
    (tmp_path / "complexity.json").write_text(json.dumps(report))
    assert main(["--complexity", str(tmp_path / "complexity.json"), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "67.6 (68, -0.4)" in out and "9.2 (9.2, +0.0)" in out and "— (16.6)" in out


def test_a_shot_sweep_is_laid_out_as_ap_against_k_with_a_curve(tmp_path, capsys):
    for k in (5, 10, 20):
        for model in ("clamp", "simplebaseline"):
            run = tmp_path / f"{model}{k}"
            run.mkdir()
            cfg = compose_train(["+experiment=fewshot20", f"model={model}", f"split.k={k}", "paths.output_dir=x"])
            (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (run / "metrics.json").write_text(json.dumps({"AP": k / 100 + (0.05 if model == "clamp" else 0)}))
    assert main([str(tmp_path), "--sweep", "split.k", "--plot", str(tmp_path / "curve.png"), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "method,k=5,k=10,k=20" in out and "clamp_vitb16,10.0,15.0,25.0" in out
    import cv2

    curve = cv2.imread(str(tmp_path / "curve.png"))
    assert curve is not None and len(np.unique(curve.reshape(-1, 3), axis=0)) > 3  # not a blank canvas


def test_runs_can_be_read_from_a_wandb_group():
    class Remote:
        def __init__(self, config, ap):
            self.id, self.config, self.summary = f"id{ap}", config, {"test/AP": ap, "test/AR": ap}

    class Api:
        def runs(self, project, filters):
            assert project == "me/clamp" and filters == {"group": "table3"}
            return [
                Remote(OmegaConf.to_container(compose_train([*job, "paths.output_dir=x"]), resolve=True), 0.1 * i)
                for i, job in enumerate(sweep_jobs("table3"), 1)
            ]

    runs = wandb_runs("me/clamp", "table3", api=Api())
    header, rows = layout(TABLES[3], runs)
    assert all("(" in row[5] and not row[5].startswith("—") for row in rows)
    assert row_key(runs[0].config) == ("simplebaseline_rn50", "bovidae_canidae")


@pytest.mark.slow
def test_a_whole_table_runs_offline_as_a_smoke_multirun_and_fills_every_row(tmp_path):
    result = run_cli(
        "-m",
        "clamp.train",
        "-m",
        "+experiment=table3",
        "+debug=smoke",
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        "logger=none",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = run_cli("-m", "clamp.tables", str(tmp_path / "multirun"))
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(TABLES[3].rows)
    assert all("random weights, synthetic data" in row and "— (" not in row for row in rows)
