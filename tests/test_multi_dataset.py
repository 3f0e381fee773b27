"""Multi-dataset training (data=multi): the union keypoint space, masked targets, ratio sampling, and
per-dataset scores equal to single-dataset scores of the same predictions (and to pycocotools run
directly), on the real AP-10K and Animal-Pose fixtures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from clamp.codec import HeatmapCodec
from clamp.data.coco import load_coco_keypoints
from clamp.data.dataset import EpochSampler, TopDownDataset
from clamp.data.multi import MultiTopDownDataset, RatioSampler, SamplingRatioError, UnionView, sample_counts
from clamp.data.transforms import TopDownTransform
from clamp.evaluation.metric import KeypointAPMetric
from clamp.evaluation.multi import MultiDatasetAPMetric
from clamp.keypoints import (
    ANIMALPOSE,
    AP10K,
    AP10K_ANIMALPOSE,
    KeypointSpec,
    KeypointUnionError,
    build_union,
    get_keypoint_spec,
    get_keypoint_union,
)
from clamp.lightning.multi import MultiDataConfigError, MultiPoseDataModule
from clamp.losses import clamp_total_loss
from clamp.models.pose_models import PoseOutput
from tests.helpers import compose_train
from tests.test_oks_metric import pycocotools_eval

FIXTURES = {"ap10k": ("ap10k_mini", "test_ap10k.json"), "animalpose": ("animalpose_mini", "test_animalpose.json")}
INPUT, HEATMAP, COARSE = (64, 64), (16, 16), (4, 4)
# Union channels Animal-Pose does not annotate: AP-10K's neck, shoulders, elbows, hips and knees.
AP10K_ONLY = ("neck", "left_shoulder", "left_elbow", "right_shoulder", "right_elbow")
AP10K_ONLY += ("left_hip", "left_knee", "right_hip", "right_knee")


def union_index(name: str) -> int:
    return AP10K_ANIMALPOSE.spec.keypoint_names.index(name)


# ---- the union ------------------------------------------------------------------------------------
def test_animalpose_keypoints_share_a_channel_only_with_the_ap10k_keypoint_of_the_same_meaning():
    channels = AP10K_ANIMALPOSE.channels("animalpose")
    shared = {
        ANIMALPOSE.keypoint_names[i]: AP10K.keypoint_names[c] for i, c in enumerate(channels) if c < AP10K.num_keypoints
    }
    assert shared == {
        "L_Eye": "left_eye",
        "R_Eye": "right_eye",
        "Nose": "nose",
        "TailBase": "root_of_tail",
        "L_F_Paw": "left_front_paw",
        "R_F_Paw": "right_front_paw",
        "L_B_Paw": "left_back_paw",
        "R_B_Paw": "right_back_paw",
    }
    assert AP10K_ANIMALPOSE.channels("ap10k") == tuple(range(17))  # AP-10K's own order comes first
    # Neck is neither throat nor withers; the legs' joints are kept apart; 17 + 20 - 8 channels.
    for kept_apart in ("Throat", "Withers", "L_F_Elbow", "L_B_Elbow", "L_F_Knee", "L_B_Knee", "L_EarBase"):
        assert channels[ANIMALPOSE.keypoint_names.index(kept_apart)] >= AP10K.num_keypoints
    assert AP10K_ANIMALPOSE.spec.num_keypoints == 29
    assert len(set(AP10K_ANIMALPOSE.spec.prompt_words)) == 29  # one prompt per channel


def test_the_shared_keypoints_are_those_mmpose_names_alike_in_both_datasets(fixtures_dir):
    """Checked against the reference notes' tables (mmpose's own names): AP-10K and Animal-Pose keypoints
    that mmpose names alike are exactly the shared ones, with tail base = AP-10K's "Root of tail"."""
    notes = fixtures_dir.parent / "docs" / "reference" / "datasets_and_eval.md"
    if not notes.is_file():
        pytest.skip(f"reference notes not found at {notes}")
    text = notes.read_text()
    ap10k_rows = re.findall(r"^\| (\d+) \| (\w+) \| ([^|]+?) \|", text.split("### 1.3")[1].split("###")[0], re.M)
    mmpose_name = {json_name: mm for _, json_name, mm in ap10k_rows}
    assert list(mmpose_name) == list(AP10K.keypoint_names)
    animalpose_rows = re.findall(r"^\| (\d+) \| (\w+) \|", text.split("### 2.2")[1].split("###")[0], re.M)
    assert [name for _, name in animalpose_rows] == list(ANIMALPOSE.keypoint_names)
    same_name = {mm: json_name for json_name, mm in mmpose_name.items() if mm in ANIMALPOSE.keypoint_names}
    assert mmpose_name["root_of_tail"] == "Root of tail"  # Animal-Pose's TailBase, named otherwise
    same_name["TailBase"] = "root_of_tail"
    channels = AP10K_ANIMALPOSE.channels("animalpose")
    for i, name in enumerate(ANIMALPOSE.keypoint_names):
        expected = AP10K.keypoint_names.index(same_name[name]) if name in same_name else None
        assert (channels[i] if channels[i] < 17 else None) == expected, name


def test_union_flip_pairs_are_each_datasets_own_and_sigmas_follow_the_first_member():
    union = AP10K_ANIMALPOSE
    for spec in (AP10K, ANIMALPOSE):
        to_union = union.channels(spec)
        flip = union.spec.flip_index
        assert [flip[c] for c in to_union] == [to_union[j] for j in spec.flip_index]
    assert union.spec.sigmas[:17] == AP10K.sigmas
    ap = union.channels(ANIMALPOSE)
    assert [union.spec.sigmas[ap[i]] for i in range(20) if ap[i] >= 17] == [
        s for i, s in enumerate(ANIMALPOSE.sigmas) if ap[i] >= 17
    ]
    assert get_keypoint_spec("ap10k_animalpose") is union.spec
    assert get_keypoint_union(union.spec.to_dict()["name"]) is union


def _spec(name: str, names: list[str], flip_pairs=()) -> KeypointSpec:
    return KeypointSpec(name, tuple(names), tuple(n.replace("_", " ") for n in names), tuple(flip_pairs),
                        (0.05,) * len(names), (), (0,))  # fmt: skip


def test_a_union_refuses_unknown_names_and_contradicting_flips():
    base = _spec("a", ["l_eye", "r_eye", "nose"], [(0, 1)])
    with pytest.raises(KeypointUnionError, match="no keypoint"):
        build_union("u", base, [(_spec("b", ["x"]), {"y": "nose"})])
    with pytest.raises(KeypointUnionError, match="not a keypoint of the union"):
        build_union("u", base, [(_spec("b", ["x"]), {"x": "tail"})])
    with pytest.raises(KeypointUnionError, match="flip"):
        build_union("u", base, [(_spec("b", ["e1", "e2"], [(0, 1)]), {"e1": "l_eye", "e2": "nose"})])
    with pytest.raises(KeypointUnionError, match="already taken"):
        build_union("u", base, [(_spec("b", ["nose"]), {})])
    custom = get_keypoint_union(
        {"name": "u", "base": "ap10k", "others": [{"keypoints": base.to_dict(), "same": {"nose": "nose"}}]}
    )
    assert custom.channels("a") == (17, 18, 2)


# ---- union-space samples and the masked loss ---------------------------------------------------------
def fixture_dataset(fixtures_dir: Path, name: str, training: bool = False) -> TopDownDataset:
    folder, file = FIXTURES[name]
    spec = get_keypoint_spec(name)
    data = load_coco_keypoints(fixtures_dir / folder / file, spec, image_root=fixtures_dir / folder)
    codec = HeatmapCodec(INPUT, HEATMAP, 2.0, COARSE)
    return TopDownDataset(data, TopDownTransform(spec, input_size=INPUT, training=training), codec, seed=0)


def test_keypoints_a_dataset_does_not_annotate_get_no_target_and_no_loss(fixtures_dir):
    view = UnionView(fixture_dataset(fixtures_dir, "animalpose"), AP10K_ANIMALPOSE.channels("animalpose"), 29, 1)
    alone = fixture_dataset(fixtures_dir, "animalpose")
    batch = torch.utils.data.default_collate([view[0], view[1]])
    missing = [union_index(n) for n in AP10K_ONLY]
    assert batch["target_weight"][:, missing].abs().sum() == 0 and batch["coarse_weight"][:, missing].sum() == 0
    assert batch["heatmap"][:, missing].abs().sum() == 0 and batch["dataset_index"].tolist() == [1, 1]
    channels = list(AP10K_ANIMALPOSE.channels("animalpose"))
    torch.testing.assert_close(batch["heatmap"][:, channels], torch.stack([alone[0]["heatmap"], alone[1]["heatmap"]]))

    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 29, *HEATMAP, generator=generator, requires_grad=True)
    other = pred.detach().clone()
    other[:, missing] = torch.rand(2, len(missing), *HEATMAP, generator=generator) * 10
    features = torch.rand(2, 8, *COARSE, generator=generator)
    prompts = torch.rand(2, 29, 8, generator=generator)

    def loss(heatmaps: torch.Tensor) -> torch.Tensor:
        output = PoseOutput(heatmaps=heatmaps, spatial_heatmaps=heatmaps, dense_features=features,
                            prompt_embeddings=prompts)  # fmt: skip
        return clamp_total_loss(output, batch, alpha_spatial=1.0, alpha_feature=1.0, logit_scale=torch.tensor(1.0))

    total = loss(pred)["loss"]
    total.backward()
    assert pred.grad[:, missing].abs().sum() == 0 and pred.grad[:, channels].abs().sum() > 0
    torch.testing.assert_close(loss(other)["loss"], total.detach())


# ---- ratio sampling --------------------------------------------------------------------------------
def test_the_ratio_sampler_draws_each_dataset_at_its_ratio_reproducibly_and_resumes_exactly():
    assert sample_counts([10, 4], [1, 1], 14) == [7, 7]
    assert sample_counts([10, 4], [10, 4], 14) == [10, 4]
    assert sum(sample_counts([5, 5, 5], [1, 1, 1], 10)) == 10
    with pytest.raises(SamplingRatioError):
        sample_counts([3, 3], [1, 0], 6)
    sampler = RatioSampler([10, 4], [1, 3], epoch_size=20, seed=2)
    sampler.set_epoch(1)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 20
    first, second = [k for k in keys if k[1] < 10], [k for k in keys if k[1] >= 10]
    assert (len(first), len(second)) == (5, 15)
    # A dataset drawn more often than its size goes through whole permutations; repeats get a new draw.
    assert sorted(k[1] for k in second if k[2] == 0) == list(range(10, 14))
    assert len({(k[1], k[2]) for k in keys}) == 20
    again = RatioSampler([10, 4], [1, 3], epoch_size=20, seed=2)
    again.set_epoch(1)
    assert list(again) == keys
    again.set_epoch(2)
    assert list(again) != keys
    again.set_epoch(1)
    again.resume(1, 7)
    assert list(again) == keys[7:]
    shards = [RatioSampler([10, 4], [1, 3], epoch_size=20, seed=2, num_replicas=3, rank=r) for r in range(3)]
    for shard in shards:
        shard.set_epoch(1)
    assert sorted({k for shard in shards for k in shard}) == sorted(set(keys))
    plain = EpochSampler(14, shuffle=True, seed=2)
    assert all(len(k) == 2 for k in plain)  # single-dataset keys unchanged


def test_a_repeated_draw_of_a_sample_gets_a_new_augmentation_and_draw_zero_is_the_plain_key(fixtures_dir):
    dataset = MultiTopDownDataset(
        [
            UnionView(fixture_dataset(fixtures_dir, "ap10k", training=True), range(17), 29, 0),
            UnionView(
                fixture_dataset(fixtures_dir, "animalpose", training=True),
                AP10K_ANIMALPOSE.channels("animalpose"),
                29,
                1,
            ),
        ]
    )
    assert dataset[(0, 3)]["dataset_index"] == 1
    torch.testing.assert_close(dataset[(0, 3, 0)]["image"], dataset[(0, 3)]["image"])
    assert not torch.equal(dataset[(0, 3, 1)]["image"], dataset[(0, 3)]["image"])


# ---- per-dataset evaluation = single-dataset evaluation -------------------------------------------------
def fixture_members(fixtures_dir: Path) -> dict:
    return {
        name: {
            "keypoints": name,
            "root": str(fixtures_dir / folder),
            "splits": {stage: {"ann": file, "images": "."} for stage in ("train", "val", "test")},
        }
        for name, (folder, file) in FIXTURES.items()
    }


def multi_datamodule(fixtures_dir: Path, **extra) -> MultiPoseDataModule:
    return MultiPoseDataModule(
        keypoints="ap10k_animalpose",
        datasets=fixture_members(fixtures_dir),
        split={"mode": "full"},
        input_size=INPUT,
        heatmap_size=HEATMAP,
        coarse_size=COARSE,
        batch_size=2,
        num_workers=0,
        **extra,
    )


def predicted_heatmaps(batch: dict, noise: float, seed: int) -> torch.Tensor:
    """Union heatmaps: the targets blurred by noise at each sample's own channels, garbage elsewhere (so
    that scoring any other channel than the dataset's own would change the numbers)."""
    generator = torch.Generator().manual_seed(seed)
    heatmaps = batch["heatmap"] + noise * torch.rand(batch["heatmap"].shape, generator=generator)
    for row, index in enumerate(batch["dataset_index"].tolist()):
        own = torch.zeros(29, dtype=torch.bool)
        own[list(AP10K_ANIMALPOSE.channels(("ap10k", "animalpose")[index]))] = True
        heatmaps[row, ~own] = torch.rand((int((~own).sum()), *HEATMAP), generator=generator)
    return heatmaps


def test_each_dataset_scores_as_a_single_dataset_evaluation_and_pycocotools_of_the_same_predictions(fixtures_dir):
    datamodule = multi_datamodule(fixtures_dir)
    datamodule.setup("validate")
    views = datamodule.datasets["val"]
    # Both datasets in one batch: the metric routes every row to its own dataset.
    batch = torch.utils.data.default_collate([views[0][0], views[1][0], views[0][1], views[1][1]])
    heatmaps = predicted_heatmaps(batch, noise=0.6, seed=0)
    gts = {name: datamodule.ground_truth("val", name) for name in FIXTURES}
    multi = MultiDatasetAPMetric(AP10K_ANIMALPOSE, [(n, get_keypoint_spec(n), gts[n]) for n in FIXTURES])
    multi.update(heatmaps, batch)
    stats = multi.compute()
    report = multi.last_report
    for index, name in enumerate(FIXTURES):
        spec = get_keypoint_spec(name)
        rows = batch["dataset_index"] == index
        single = KeypointAPMetric(spec, gts[name])
        single.update(heatmaps[rows][:, list(AP10K_ANIMALPOSE.channels(name))],
                      {k: v[rows] for k, v in batch.items() if k != "skipped"})  # fmt: skip
        alone = {k: float(v) for k, v in single.compute().items()}
        assert {k: float(stats[f"{name}/{k}"]) for k in alone} == alone
        assert report["datasets"][name]["per_species"] == single.last_report["per_species"]
        direct = pycocotools_eval(gts[name], single.coco_results(), spec.sigmas)
        assert float(stats[f"{name}/AP"]) == pytest.approx(direct.stats[0], abs=1e-12)
    from clamp.lightning.callbacks import WandbEvaluationLogger

    class Table:  # what the W&B logger's tables need of wandb
        def __init__(self, columns, data):
            self.columns, self.data = columns, data

    tables = WandbEvaluationLogger.tables(report, type("wandb", (), {"Table": Table}))
    names = [row[0] for row in tables["val/per_species_AP"].data]
    assert any(n.startswith("ap10k: ") for n in names) and any(n.startswith("animalpose: ") for n in names)
    aps = [report["datasets"][n]["AP"] for n in FIXTURES]
    assert 0 < min(aps) < 1 and float(stats["AP"]) == pytest.approx(sum(aps) / 2)


def test_a_joint_run_trains_and_reports_each_datasets_ap_from_the_experiment_config(fixtures_dir, tmp_path, capsys):
    from clamp.train import train

    members = fixture_members(fixtures_dir)
    overrides = [
        "+experiment=joint_ap10k_animalpose",
        "+debug=smoke",
        "backbone=tiny_rn",
        "+model.overrides.input_size=64",
        "+model.overrides.heatmap_size=16",
        "data.root=null",
        "data.generate=null",
        "trainer.max_epochs=1",
        "test_after_fit=true",
        f"paths.output_dir={tmp_path}",
        "data.datasets.ap10k.ratio=1",
        "data.datasets.animalpose.ratio=3",
        "data.epoch_size=8",
    ]
    for name, member in members.items():
        overrides.append(f"data.datasets.{name}.root={member['root']}")
        for stage in ("train", "val", "test"):
            overrides += [f"data.datasets.{name}.splits.{stage}.ann={member['splits'][stage]['ann']}",
                          f"data.datasets.{name}.splits.{stage}.images=."]  # fmt: skip
    metrics = train(compose_train(overrides))
    printed = capsys.readouterr().out
    assert "evaluated 2 test batches" in printed  # one batch of each dataset's test loader
    assert re.search(r"^animalpose +\d", printed, re.M) and re.search(r"^mean +\d", printed, re.M)
    assert set(metrics["datasets"]) == {"ap10k", "animalpose"}
    assert metrics["AP"] == pytest.approx(
        (metrics["datasets"]["ap10k"]["AP"] + metrics["datasets"]["animalpose"]["AP"]) / 2
    )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["datasets"]["animalpose"]["AP"] == metrics["datasets"]["animalpose"]["AP"]
    for name in FIXTURES:
        manifest = json.loads((tmp_path / f"split_manifest.{name}.json").read_text())
        assert manifest["parts"]["test"]["instance_ids"]
    from clamp.eval import evaluate
    from tests.helpers import compose_eval

    ckpt = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    again = evaluate(compose_eval([f"ckpt={ckpt}", f"paths.output_dir={tmp_path / 'eval'}", "trainer.accelerator=cpu"]))
    assert {n: again["datasets"][n]["AP"] for n in FIXTURES} == {n: metrics["datasets"][n]["AP"] for n in FIXTURES}
    assert (tmp_path / "eval" / "results.animalpose.json").is_file()
    logged = (tmp_path / "csv").rglob("metrics.csv")
    header = next(iter(logged)).read_text().splitlines()[0]
    assert "val/ap10k/AP" in header and "val/animalpose/AP" in header and "val/AP" in header


def test_a_multi_config_naming_a_dataset_outside_the_union_stops_with_one_message(fixtures_dir):
    members = fixture_members(fixtures_dir)
    members["people"] = {**members["ap10k"], "keypoints": "coco"}
    with pytest.raises(MultiDataConfigError, match="'coco' are not a member of the union 'ap10k_animalpose'"):
        MultiPoseDataModule("ap10k_animalpose", members, {"mode": "full"}, INPUT, HEATMAP, COARSE, 2)
    members.pop("people")
    members["ap10k"]["ratio"] = 2
    with pytest.raises(MultiDataConfigError, match="give every member a ratio"):
        MultiPoseDataModule("ap10k_animalpose", members, {"mode": "full"}, INPUT, HEATMAP, COARSE, 2)


def test_the_sampling_ratio_of_the_config_sets_each_datasets_share_of_an_epoch(fixtures_dir):
    members = fixture_members(fixtures_dir)
    members["ap10k"]["ratio"], members["animalpose"]["ratio"] = 1, 3
    datamodule = MultiPoseDataModule(
        "ap10k_animalpose", members, {"mode": "full"}, INPUT, HEATMAP, COARSE, 2, num_workers=0, epoch_size=8
    )
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    indices = torch.cat([batch["dataset_index"] for batch in batches]).tolist()
    assert (indices.count(0), indices.count(1)) == (2, 6)
    # A run resumed after one batch of the epoch sees exactly the samples the interrupted one would have.
    datamodule.load_state_dict({"epoch": 0, "batches": 1})
    resumed = list(datamodule.train_dataloader())
    assert len(resumed) == len(batches) - 1
    for before, after in zip(batches[1:], resumed, strict=True):
        torch.testing.assert_close(after["image"], before["image"])
        assert after["dataset_index"].tolist() == before["dataset_index"].tolist()
    assert len(datamodule.val_dataloader()) == 2  # one evaluation loader per dataset
    np.testing.assert_array_equal(
        next(iter(datamodule.val_dataloader()[1]))["target_weight"][:, [union_index(n) for n in AP10K_ONLY]], 0
    )


# ---- the "trained alone vs trained jointly" table ----------------------------------------------------
def write_run(folder: Path, experiment: str, metrics: dict) -> None:
    from omegaconf import OmegaConf

    cfg = compose_train([f"+experiment={experiment}", "+debug=smoke", f"paths.output_dir={folder}"])
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_the_tables_command_lays_out_each_dataset_trained_alone_beside_trained_jointly(tmp_path, capsys):
    from clamp.tables.__main__ import main

    write_run(tmp_path / "ap10k", "supervised", {"AP": 0.70})
    write_run(tmp_path / "animalpose", "animalpose", {"AP": 0.60})
    write_run(tmp_path / "joint", "joint_ap10k_animalpose",
              {"AP": 0.68, "datasets": {"ap10k": {"AP": 0.72}, "animalpose": {"AP": 0.64}}})  # fmt: skip
    assert main([str(tmp_path), "--joint", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("dataset,method,ran,AP trained alone,AP trained jointly")
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert rows["ap10k"][-3:] == ["70.0", "72.0", "+2.0"] and rows["ap10k"][1] == "clamp_vitb16"
    assert rows["animalpose"][-3:] == ["60.0", "64.0", "+4.0"]
    assert main([str(tmp_path / "ap10k"), "--joint"]) == 2  # no joint run: one clear line
    assert "data=multi" in capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_smoke_commands_train_jointly_and_alone_on_both_layouts_and_tabulate_them(tmp_path):
    from tests.helpers import run_cli

    common = [f"paths.data_dir={tmp_path / 'data'}"]
    for name, experiment in (("joint", "joint_ap10k_animalpose"), ("ap10k", "supervised"), ("ap", "animalpose")):
        result = run_cli("-m", "clamp.train", f"+experiment={experiment}", "+debug=smoke",
                         f"hydra.run.dir={tmp_path / 'runs' / name}", *common, timeout=900)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    joint = json.loads((tmp_path / "runs" / "joint" / "metrics.json").read_text())
    assert set(joint["datasets"]) == {"ap10k", "animalpose"}
    layouts = tmp_path / "data" / "smoke_ap10k_animalpose"
    assert (layouts / "ap10k" / "annotations" / "ap10k-train-split1.json").is_file()
    assert (layouts / "animalpose" / "annotations" / "animalpose_train.json").is_file()
    table = run_cli("-m", "clamp.tables", str(tmp_path / "runs"), "--joint", "--format", "csv")
    assert table.returncode == 0, table.stderr
    assert sorted(line.split(",")[0] for line in table.stdout.splitlines()[1:]) == ["animalpose", "ap10k"]


def test_a_coco_format_set_of_your_own_joins_the_datasets_from_the_command_line_as_the_readme_shows(fixtures_dir):
    from omegaconf import OmegaConf

    folder, file = FIXTURES["ap10k"]
    cfg = compose_train(
        [
            "data=multi",
            "+data@data.datasets.mine=custom",
            "data.datasets.mine.keypoints=ap10k",
            f"data.datasets.mine.root={fixtures_dir / folder}",
            *(f"data.datasets.mine.splits.{s}.ann={file}" for s in ("train", "val", "test")),
        ]  # fmt: skip
    )
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert list(data["datasets"]) == ["ap10k", "animalpose", "mine"]
    del data["datasets"]["ap10k"], data["datasets"]["animalpose"]  # not on this machine
    data.pop("_target_"), data.pop("_recursive_")
    datamodule = MultiPoseDataModule(**data, split={"mode": "full"}, input_size=INPUT, heatmap_size=HEATMAP,
                                     coarse_size=COARSE)  # fmt: skip
    datamodule.setup("validate")
    assert datamodule.member_specs() == [("mine", AP10K)] and len(datamodule.datasets["val"][0]) == 2


def test_every_data_setting_a_member_module_takes_is_given_to_each_member(fixtures_dir, tmp_path):
    import inspect

    from clamp.lightning.multi import SHARED_KEYS

    assert {"reduced_decode", "uint8_images", "decoded_cache", "batch_size"} <= set(SHARED_KEYS)
    assert set(SHARED_KEYS) <= set(inspect.signature(MultiPoseDataModule.__init__).parameters)
    datamodule = multi_datamodule(fixtures_dir, decoded_cache=str(tmp_path / "cache"), reduced_decode=True)
    for member in datamodule.members.values():
        assert member.hparams.decoded_cache == str(tmp_path / "cache") and member.hparams.reduced_decode
