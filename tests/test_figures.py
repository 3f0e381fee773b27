"""python -m clamp.figures: Fig. 3 (feature matching), Fig. 4 (score maps), Figs. 5-6 (comparison)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from clamp.figures import main


@pytest.fixture(scope="module")
def baseline_checkpoint(synthetic_root, tmp_path_factory):
    from clamp.train import train
    from tests.helpers import compose_train, fast_overrides

    run = tmp_path_factory.mktemp("baseline")
    train(compose_train(fast_overrides(synthetic_root, run, "model=simplebaseline", "trainer.limit_train_batches=2")))
    return run / "checkpoints" / "last.ckpt"


def shows_something(path, image):
    picture = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert picture.std() > 10, f"{path.name} is blank"
    assert picture.shape != image.shape or np.abs(picture.astype(int) - image).mean() > 1, f"{path.name} is the input"
    return picture


def test_figures_are_written_from_checkpoints_an_image_and_its_ground_truth(
    trained_run, baseline_checkpoint, fixtures_dir, tmp_path, monkeypatch
):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()  # W&B reads WANDB_DIR once per process; start from the state of the command's own process
    image = fixtures_dir / "ap10k_mini" / "000000037516.jpg"
    code = main(
        [
            "--ckpt",
            str(trained_run / "checkpoints" / "last.ckpt"),
            "--image",
            str(image),
            "--baseline",
            str(baseline_checkpoint),
            "--gt",
            str(fixtures_dir / "ap10k_mini" / "test_ap10k.json"),
            "--out",
            str(tmp_path / "figures"),
            "--wandb",
        ]
    )
    assert code == 0
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    names = ("fig3_feature_matching.png", "fig4_score_maps.png", "fig5_comparison.png")
    pictures = {name: shows_something(tmp_path / "figures" / name, rgb) for name in names}
    assert pictures["fig5_comparison.png"].shape[1] > 3 * rgb.shape[1]  # baseline | CLAMP | ground truth
    logged = list(tmp_path.rglob("media/images/*.png"))
    assert len(logged) == 3


def test_figures_need_a_clamp_checkpoint(baseline_checkpoint, fixtures_dir, tmp_path, capsys):
    code = main(
        [
            "--ckpt",
            str(baseline_checkpoint),
            "--image",
            str(fixtures_dir / "photos" / "chelsea.png"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "need a CLAMP model" in capsys.readouterr().err


def real_model_checkpoint(demo: Path, tmp_path: Path) -> Path:
    """``demo`` with the provenance of a real model (pretrained CLIP, real data)."""
    from clamp.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(demo)
    checkpoint["clamp"]["provenance"].update(synthetic_data=False, pretrained="RN50.pt")
    torch.save(checkpoint, tmp_path / "real.ckpt")
    return tmp_path / "real.ckpt"


def has_banner_strip(path: Path) -> bool:
    """Whether a figure starts with the dark banner strip ``draw_caption(..., above=True)`` adds."""
    from clamp.visualization import OUTLINE_COLOR

    top = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[0]
    return bool((np.abs(top.astype(int) - OUTLINE_COLOR).max(axis=1) <= 2).mean() > 0.9)


def test_a_demo_models_figures_carry_the_banner_and_no_comparison_without_a_baseline(
    trained_run, fixtures_dir, tmp_path
):
    demo = trained_run / "checkpoints" / "last.ckpt"
    image = fixtures_dir / "photos" / "chelsea.png"
    for name, ckpt in (("demo", demo), ("real", real_model_checkpoint(demo, tmp_path))):
        assert main(["--ckpt", str(ckpt), "--image", str(image), "--out", str(tmp_path / name)]) == 0
        written = sorted(p.name for p in (tmp_path / name).iterdir())
        assert written == ["fig3_feature_matching.png", "fig4_score_maps.png"], "Fig. 5 compares with --baseline"
        for figure in written:
            assert has_banner_strip(tmp_path / name / figure) == (name == "demo"), (name, figure)
