"""The Hydra configs: every experiment composes, resolves, and runs a training and a validation step."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from clamp.cli import CONFIG_PATH
from tests.helpers import compose_train

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_PATH) / "experiment").glob("*.yaml"))
PAPER_EXPERIMENTS = [
    "demo",
    "supervised",
    "fewshot20",
    "zeroshot_bovidae_canidae",
    "zeroshot_canidae_felidae",
    "zeroshot_bovidae_equidae",
    "zeroshot_bovidae_felidae",
    "zeroshot_canidae_cricetidae",
    "zeroshot_canidae_equidae",
    "animalpose",
    "coco_lowdata",
]


TABLES = [name for name in EXPERIMENTS if name.startswith("table")]


def sweep_jobs(name: str) -> list[list[str]]:
    """The override lists of every job that `-m +experiment=NAME` launches (cartesian product)."""
    import itertools

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        params = compose(
            config_name="train", overrides=[f"+experiment={name}"], return_hydra_config=True
        ).hydra.sweeper.params
    choices = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [[f"+experiment={name}", *job] for job in itertools.product(*choices)]


def test_every_paper_setting_has_an_experiment_file():
    assert set(PAPER_EXPERIMENTS) <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS)
def test_experiment_composes_and_resolves(name):
    cfg = compose_train([f"+experiment={name}", "paths.output_dir=/tmp/unused"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["name"] in __import__("clamp").list_models()
    assert resolved["optimizer"]["lr"] > 0


@pytest.mark.parametrize(
    ("name", "backbone", "batch_size", "lr", "mode"),
    [
        ("supervised", "vitb16", 128, 5e-4, "full"),
        ("fewshot20", "vitb16", 64, 5e-5, "kshot"),
        ("zeroshot_bovidae_canidae", "rn50", 128, 5e-4, "family"),
        ("animalpose", "vitb16", 128, 5e-4, "full"),
    ],
)
def test_experiment_carries_the_papers_hyper_parameters(name, backbone, batch_size, lr, mode):
    cfg = compose_train([f"+experiment={name}"])
    assert cfg.backbone.name == backbone
    assert cfg.data.batch_size == batch_size
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert cfg.split.mode == mode
    assert cfg.trainer.max_epochs == 210
    assert list(cfg.scheduler.milestones) == [170, 200]


def test_custom_data_composes_from_the_command_line_as_the_readme_shows():
    cfg = compose_train(
        [
            "data=custom",
            "data.keypoints=ap10k",
            "data.root=/data/zoo",
            "data.splits.train.ann=t.json",
            "data.splits.val.ann=v.json",
            "data.splits.test.ann=v.json",
        ]
    )
    resolved = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    assert resolved["splits"]["train"] == {"ann": "t.json", "images": "."}


@pytest.mark.parametrize("name", TABLES)
def test_every_row_of_a_table_sweep_composes_to_a_registered_model(name):
    jobs = sweep_jobs(name)
    assert len(jobs) >= 2
    names = set()
    for job in jobs:
        cfg = OmegaConf.to_container(compose_train(job + ["paths.output_dir=/tmp/unused"]), resolve=True)
        assert cfg["model"]["name"] in __import__("clamp").list_models(), job
        names.add(
            (cfg["model"]["name"], str(cfg["model"]["overrides"]), str(cfg["loss"]), str(cfg["split"]), cfg["seed"])
        )
    assert len(names) == len(jobs), "two rows of the table would train the same thing"


def test_tables_cover_the_papers_training_tables():
    assert {"table1", "table2", "table3", "table4", "table6", "table8", "table9", "table10", "table11"} <= set(TABLES)
    rows = {tuple(job[1:]) for job in sweep_jobs("table1")}
    assert ("+method=simplebaseline_rn50_imagenet",) in rows and ("+method=clamp_vitb16",) in rows


def test_fewshot_learning_rate_follows_the_backbone():
    assert compose_train(["+experiment=fewshot20", "backbone=rn50"]).optimizer.lr == pytest.approx(5e-4)
    assert compose_train(["+experiment=fewshot20"]).optimizer.lr == pytest.approx(5e-5)


def test_vit_backbones_train_with_the_official_stochastic_depth_and_the_others_without():
    rates = {
        backbone: compose_train([f"backbone={backbone}"]).model.overrides.drop_path_rate
        for backbone in ("vitb16", "vitl14", "rn50", "rn50_imagenet", "tiny_rn")
    }
    assert rates == {"vitb16": 0.4, "vitl14": 0.4, "rn50": 0.0, "rn50_imagenet": 0.0, "tiny_rn": 0.0}
    # A table row that sets its own switches keeps its backbone's rate; the smoke stand-in trains with it.
    row = compose_train(["+experiment=supervised", "+method=clamp_vitb16_learned_matrix", "+debug=smoke"])
    assert row.model.overrides.drop_path_rate == 0.4 and row.model.overrides.prompt_source == "learned_matrix"


def test_zeroshot_pairs_name_the_papers_families():
    pairs = {
        "zeroshot_bovidae_canidae": ("Bovidae", "Canidae"),
        "zeroshot_canidae_felidae": ("Canidae", "Felidae"),
        "zeroshot_bovidae_equidae": ("Bovidae", "Equidae"),
        "zeroshot_bovidae_felidae": ("Bovidae", "Felidae"),
        "zeroshot_canidae_cricetidae": ("Canidae", "Cricetidae"),
        "zeroshot_canidae_equidae": ("Canidae", "Equidae"),
    }
    for name, (train_family, test_family) in pairs.items():
        cfg = compose_train([f"+experiment={name}"])
        assert (cfg.split.train_family, cfg.split.test_family) == (train_family, test_family)


def test_bare_command_is_the_paper_recipe_and_the_demo_an_offline_experiment():
    bare, supervised, demo = (compose_train(o) for o in ([], ["+experiment=supervised"], ["+experiment=demo"]))
    assert bare.model.name == "clamp_vitb16" and bare.trainer.max_epochs == 210
    for section in ("data", "split", "loss", "optimizer", "scheduler"):
        assert bare[section] == supervised[section], section  # the experiment adds only GPUs
    assert demo.data.generate is not None and demo.backbone.pretrained is None
    assert demo.trainer.accelerator == "cpu"


def test_paper_experiments_use_the_paper_recipe_not_the_demo_shortcuts():
    for name in PAPER_EXPERIMENTS[1:]:
        cfg = compose_train([f"+experiment={name}"])
        # No architecture shortcut (input size, heatmap size, ...): only the backbone's training default.
        assert cfg.model.overrides == {"drop_path_rate": cfg.backbone.drop_path_rate}
        assert cfg.data.augmentation.rotation_factor == 40 and cfg.data.augmentation.half_body_prob == 0.3
        assert cfg.scheduler.warmup_iters == 500


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS)
def test_experiment_runs_a_training_and_a_validation_step(name, synthetic_root, tmp_path):
    from clamp.train import train

    overrides = [
        f"+experiment={name}",
        "+debug=smoke",
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path}",
        "logger=none",
        "test_after_fit=false",
    ]
    if name not in ("animalpose", "coco_lowdata"):  # the AP-10K settings share the session's data
        overrides += [f"data.root={synthetic_root}", "data.generate=null"]
    train(compose_train(overrides + (["split.fraction=0.5"] if name == "coco_lowdata" else [])))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    # The best-AP checkpoint exists only if validation ran and logged val/AP.
    assert list((tmp_path / "checkpoints").glob("best-epoch000*.ckpt"))
    assert (tmp_path / "split_manifest.json").is_file()


def test_every_config_folder_and_subpackage_ships_with_the_package():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    packages = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "clamp.conf." + ".".join(p.parent.relative_to(root / "conf").parts)
        for p in (root / "conf").rglob("*.yaml")
        if p.parent != root / "conf"
    }
    folders |= {".".join(p.parent.relative_to(root / "src").parts) for p in (root / "src").rglob("__init__.py")}
    assert folders <= packages, f"add to [tool.setuptools] packages: {sorted(folders - packages)}"


def test_shots_and_loss_are_groups_so_a_sweep_over_them_is_one_line():
    for shots, k in (("k1", 1), ("k5", 5), ("k50", 50)):
        for loss, use_feature in (("clamp", True), ("spatial_only", False)):
            cfg = compose_train(["+experiment=fewshot20", f"shots={shots}", f"loss={loss}"])
            assert (cfg.split.mode, cfg.split.k, cfg.loss.use_feature) == ("kshot", k, use_feature)
    assert compose_train(["+experiment=fewshot20"]).split.k == 20
    listed = compose_train(["shots=scarcenet20", "paths.data_dir=/datasets"]).split
    assert (listed.mode, listed.ids) == ("idlist", "/datasets/ap10k_scarcenet_label_lists/annotation_list_20")
    ablation = compose_train(["loss=pred_only", "loss.alpha_spatial=0.7"]).loss
    assert (ablation.use_spatial, ablation.use_feature, ablation.alpha_spatial) == (False, False, 0.7)
