"""Training loop behaviour: optimizer groups, schedule, determinism, resume, entry points."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from clamp.keypoints import AP10K
from clamp.lightning.module import warmup_step_factor
from tests.helpers import REPO_ROOT, compose_train, fast_overrides, run_cli


def read_losses(output_dir: Path) -> list[float]:
    import csv

    (metrics,) = output_dir.glob("csv/version_*/metrics.csv")
    with metrics.open() as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_warmup_starts_at_the_ratio_and_steps_decay_at_the_milestones():
    kwargs = dict(steps_per_epoch=10, warmup_iters=500, warmup_ratio=0.001, milestones=[170, 200], gamma=0.1)
    assert warmup_step_factor(0, **kwargs) == pytest.approx(0.001)
    assert warmup_step_factor(250, **kwargs) == pytest.approx(0.5005)
    assert warmup_step_factor(500, **kwargs) == pytest.approx(1.0)
    assert warmup_step_factor(1699, **kwargs) == pytest.approx(1.0)
    assert warmup_step_factor(1700, **kwargs) == pytest.approx(0.1)
    assert warmup_step_factor(2000, **kwargs) == pytest.approx(0.01)


def test_same_seed_gives_the_same_first_epoch_losses(synthetic_root, tmp_path):
    from clamp.train import train

    runs = []
    for name in ("a", "b"):
        cfg = compose_train(fast_overrides(synthetic_root, tmp_path / name, "trainer.max_epochs=1", "seed=3"))
        train(cfg)
        runs.append(read_losses(tmp_path / name))
    assert len(runs[0]) > 3
    assert runs[0] == runs[1]


def test_resume_continues_from_the_saved_step_with_the_same_optimizer_state(synthetic_root, tmp_path):
    from clamp.train import train

    train(compose_train(fast_overrides(synthetic_root, tmp_path / "first", "trainer.max_epochs=1")))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and saved["global_step"] > 0

    from lightning.pytorch.callbacks import Callback

    seen = {}

    class Capture(Callback):
        def on_train_start(self, trainer, pl_module):
            seen["step"] = trainer.global_step
            seen["epoch"] = trainer.current_epoch
            seen["optimizer"] = copy.deepcopy(trainer.optimizers[0].state_dict())  # before it trains on
            seen["lr"] = trainer.lr_scheduler_configs[0].scheduler.last_epoch

    import clamp.train as train_module

    original = train_module.build_trainer

    def with_capture(cfg, output_dir):
        trainer = original(cfg, output_dir)
        trainer.callbacks.append(Capture())
        return trainer

    train_module.build_trainer = with_capture
    try:
        train(
            compose_train(
                fast_overrides(synthetic_root, tmp_path / "second", "trainer.max_epochs=2", f"ckpt_path={last}")
            )
        )
    finally:
        train_module.build_trainer = original
    assert seen["step"] == saved["global_step"]
    assert seen["epoch"] == 1
    assert seen["lr"] == saved["lr_schedulers"][0]["last_epoch"]
    state, resumed = saved["optimizer_states"][0]["state"], seen["optimizer"]["state"]
    assert state.keys() == resumed.keys()
    for key in state:
        assert torch.equal(state[key]["exp_avg"], resumed[key]["exp_avg"])


def test_missing_dataset_stops_with_one_clear_message_and_no_traceback(tmp_path):
    result = run_cli("-m", "clamp.train", "+experiment=fewshot20", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "data" / "ap-10k" / "annotations" / "ap10k-train-split1.json") in result.stderr
    assert "+experiment=demo" in result.stderr


def test_missing_clip_weights_name_the_file_and_how_to_get_it(tmp_path, synthetic_root):
    result = run_cli(
        "-m",
        "clamp.train",
        "+experiment=fewshot20",
        "backbone=rn50",
        f"paths.root_dir={tmp_path}",
        f"data.root={synthetic_root}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "RN50.pt" in result.stderr


def test_eval_entry_point_reproduces_the_test_metrics_of_a_checkpoint(synthetic_root, tmp_path):
    from clamp.train import train

    metrics = train(
        compose_train(fast_overrides(synthetic_root, tmp_path / "run", "trainer.max_epochs=1", "test_after_fit=true"))
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run_cli("-m", "clamp.eval", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(evaluated) >= {"AP", "AP50", "AP75", "APM", "APL", "AR"}
    assert evaluated["AP"] == pytest.approx(metrics["AP"])


def test_wandb_logger_records_metrics_config_species_table_and_prediction_images(synthetic_root, tmp_path, monkeypatch):
    import contextlib

    import wandb
    from wandb.sdk.wandb_run import Run

    from clamp.train import train

    # W&B keeps one service and run per process: start from a fresh state whatever an earlier test of this
    # worker left (e.g. the survival test that kills the service on purpose).
    with contextlib.suppress(Exception):
        wandb.teardown()
    from wandb.sdk.lib import module as wandb_globals

    wandb_globals.unset_globals()  # a run whose service is gone must not be reused
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    finished = {}
    finish = Run.finish

    def finish_and_keep(run, *args, **kwargs):
        # The run's own config and summary, as it holds them when it ends (offline runs write no JSON).
        finished.update(config=dict(run.config), summary=dict(run.summary))
        return finish(run, *args, **kwargs)

    monkeypatch.setattr(Run, "finish", finish_and_keep)
    train(
        compose_train(
            fast_overrides(synthetic_root, tmp_path, "trainer.max_epochs=1", "logger=wandb", "callbacks.log_images=2")
        )
    )
    assert finished["config"]["loss"]["feature_sampling"] == "nearest", "resolved config not logged"
    assert finished["config"]["data"]["root"] == str(synthetic_root)
    assert {"val/AP", "train/loss_pred"} <= set(finished["summary"]), "metrics not logged"
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    media = list((run_dir / "files" / "media").rglob("*"))
    assert any(p.suffix == ".png" for p in media), "no prediction images logged"
    assert any("per_species_AP" in p.name and p.suffix == ".json" for p in media), "no per-species table"


def test_predict_writes_named_keypoints_and_drawings_for_a_folder_of_images(synthetic_root, tmp_path):
    from clamp.train import train

    train(compose_train(fast_overrides(synthetic_root, tmp_path / "run", "trainer.max_epochs=1")))
    images = tmp_path / "photos"
    images.mkdir()
    for name in sorted((synthetic_root / "data").iterdir())[:2]:
        (images / name.name).write_bytes(name.read_bytes())
    boxes = tmp_path / "boxes.json"
    first = sorted(images.iterdir())[0].name
    boxes.write_text(
        json.dumps([{"file_name": first, "bbox": [5, 5, 60, 50]}, {"file_name": first, "bbox": [40, 30, 80, 90]}])
    )
    result = run_cli(
        "-m",
        "clamp.predict",
        f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
        f"input={images}",
        f"boxes={boxes}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "predictions.json").read_text())
    predictions = report["images"]
    # The second image is not in the boxes file: no animal, listed as such.
    assert [len(p["animals"]) for p in predictions] == [2, 0]
    assert report["without_boxes"] == [predictions[1]["file_name"]]
    assert set(predictions[0]["animals"][0]["keypoints"]) == set(AP10K.keypoint_names)
    assert all((tmp_path / "out" / f"{p['file_name']}.pose.jpg").is_file() for p in predictions)


def test_predict_reports_a_missing_input_folder_in_one_line(tmp_path):
    result = run_cli(
        "-m",
        "clamp.predict",
        f"ckpt={tmp_path / 'x.ckpt'}",
        f"input={tmp_path / 'nowhere'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "nowhere" in result.stderr


def test_a_run_writes_the_same_split_manifest_as_the_cli(synthetic_root, tmp_path):
    from clamp.lightning.datamodule import PoseDataModule

    cfg = compose_train(fast_overrides(synthetic_root, tmp_path, "split=kshot", "split.k=3", "seed=7"))
    datamodule = PoseDataModule(
        keypoints="ap10k",
        root=str(synthetic_root),
        splits=cfg.data.splits,
        split=dict(cfg.split),
        input_size=(64, 64),
        heatmap_size=(16, 16),
        coarse_size=(2, 2),
        batch_size=4,
        manifest_path=str(tmp_path / "run_manifest.json"),
    )
    datamodule.setup("fit")
    result = run_cli(
        "-m",
        "clamp.data.splits",
        "--ann",
        str(synthetic_root / "annotations" / "ap10k-train-split1.json"),
        "--val-ann",
        str(synthetic_root / "annotations" / "ap10k-val-split1.json"),
        "--test-ann",
        str(synthetic_root / "annotations" / "ap10k-val-split1.json"),
        "--mode",
        "kshot",
        "--k",
        "3",
        "--seed",
        "7",
        "--out",
        str(tmp_path / "cli.json"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run_manifest.json").read_bytes() == (tmp_path / "cli.json").read_bytes()


def test_a_multirun_gives_each_job_its_folder_and_clamp_tables_lays_them_out(synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [
        o
        for o in fast_overrides(
            synthetic_root,
            tmp_path,
            "trainer.max_epochs=1",
            "test_after_fit=true",
            "trainer.limit_train_batches=2",
            "trainer.limit_test_batches=2",
        )
        if not o.startswith("paths.output_dir=")
    ]
    result = run_cli(
        "-m", "clamp.train", "-m", "model=simplebaseline,clamp", f"hydra.sweep.dir={sweep}", *overrides, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file() and (sweep / job / "checkpoints" / "last.ckpt").is_file()
    table = run_cli("-m", "clamp.tables", str(sweep), "--sweep", "seed", "--format", "csv", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "method,seed=0"
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["clamp_tiny_rn", "simplebaseline_tiny_rn"]
