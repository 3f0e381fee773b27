"""Who writes a dataset: only ``python -m clamp.synthetic`` and a synthetic config into its own folder
(``data.generate.out``, the demo's ``data/synthetic``). Evaluation reads, and a ``data.root`` a user names
is read, never written, whatever it holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from clamp.checkpoint import read_checkpoint
from clamp.lightning.datamodule import MissingDataError, PoseDataModule
from clamp.synthetic.datasets import MANIFEST_NAME
from tests.helpers import compose_train, run_cli

# The demo's own generation settings, made small so that a regression costs seconds, not minutes.
SMALL = {"num_train": 2, "num_val": 1, "num_test": 1, "image_size": 64}


def demo_generate() -> dict:
    return {**OmegaConf.to_container(compose_train(["+experiment=demo"]).data.generate, resolve=True), **SMALL}


def snapshot(folder: Path) -> list[tuple[str, int]] | None:
    """What a folder holds (names and modification times), or None when it does not exist."""
    if not folder.exists():
        return None
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture
def demo_checkpoint(trained_run: Path, tmp_path: Path) -> Path:
    """The session's checkpoint with the synthetic-data settings a ``make demo`` checkpoint records."""
    checkpoint = read_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    checkpoint["datamodule_hyper_parameters"]["generate"] = demo_generate()
    path = tmp_path / "demo.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("folder", ["empty", "unrelated_files", "mistyped"])
def test_eval_never_writes_a_dataset_into_the_folder_it_is_given(demo_checkpoint, tmp_path, folder):
    root = tmp_path / "mine"
    if folder != "mistyped":
        root.mkdir()
    if folder == "unrelated_files":
        (root / "notes.txt").write_text("my notes\n")
    before = snapshot(root)
    result = run_cli(
        "-m", "clamp.eval", f"ckpt={demo_checkpoint}", f"data.root={root}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and line.startswith("error: ap10k train annotation file not found: ")
    assert str(root / "annotations" / "ap10k-train-split1.json") in line and "python -m clamp.synthetic --out" in line
    assert snapshot(root) == before
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_eval_reads_a_dataset_clamp_did_not_write_and_leaves_it_as_it_is(demo_checkpoint, synthetic_root, tmp_path):
    root = tmp_path / "ap-10k"
    shutil.copytree(synthetic_root, root)
    (root / MANIFEST_NAME).unlink()  # now it is a user's AP-10K copy, not clamp.synthetic's folder
    before = snapshot(root)
    result = run_cli(
        "-m", "clamp.eval", f"ckpt={demo_checkpoint}", f"data.root={root}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and (tmp_path / "eval" / "metrics.json").is_file()
    assert snapshot(root) == before


def test_training_on_a_data_root_you_name_reads_it_and_never_generates_into_it(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    result = run_cli("-m", "clamp.train", "+debug=tiny", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(root) in line and "python -m clamp.synthetic --out" in line
    assert snapshot(root) == []


def datamodule(root: Path, generate: dict | None) -> PoseDataModule:
    cfg = compose_train(["+debug=tiny"]).data
    return PoseDataModule(
        keypoints="ap10k",
        root=str(root),
        splits=OmegaConf.to_container(cfg.splits),
        split={"mode": "full"},
        input_size=(64, 64),
        heatmap_size=(16, 16),
        coarse_size=None,
        batch_size=2,
        generate=generate,
    )


def test_a_synthetic_config_generates_into_its_own_folder_only(tmp_path):
    own = tmp_path / "synthetic"
    generate = {**demo_generate(), "out": str(own)}
    elsewhere = datamodule(tmp_path / "elsewhere", generate)
    assert not elsewhere.writes_dataset
    elsewhere.prepare_data()
    with pytest.raises(MissingDataError, match="elsewhere"):
        elsewhere.check_files()
    assert not (tmp_path / "elsewhere").exists()
    demo = datamodule(own, generate)
    assert demo.writes_dataset
    demo.prepare_data()
    demo.check_files()
    assert (own / MANIFEST_NAME).is_file()
