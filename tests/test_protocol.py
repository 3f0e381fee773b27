"""The official protocol end to end: scoring against the annotation file itself, the manifest as the record
of what was scored, checkpoints that rebuild the trained network, score-map geometry."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import clamp
from clamp.evaluation.metric import KeypointAPMetric
from clamp.keypoints import get_keypoint_spec
from clamp.lightning.datamodule import PoseDataModule
from tests.helpers import REPO_ROOT, compose_train, fast_overrides, run_cli

FIXTURES = {"ap10k": ("ap10k_mini", "test_ap10k.json"), "animalpose": ("animalpose_mini", "test_animalpose.json")}


def with_ignored_annotations(raw: dict) -> dict:
    """The fixture plus, on every image, a keypoint-less annotation covering its animal and a crowd one:
    the ground truth pycocotools keeps as *ignored* (the case the official evaluator scores)."""
    raw = copy.deepcopy(raw)
    next_id = max(a["id"] for a in raw["annotations"]) + 1
    for ann in list(raw["annotations"]):
        x, y, w, h = ann["bbox"]
        k = len(ann["keypoints"]) // 3
        raw["annotations"].append(
            {
                **ann,
                "id": next_id,
                "keypoints": [0] * (3 * k),
                "num_keypoints": 0,
                "bbox": [x + 0.1 * w, y + 0.1 * h, 0.8 * w, 0.8 * h],
                "area": 0.64 * w * h,
            }
        )
        raw["annotations"].append({**ann, "id": next_id + 1, "iscrowd": 1})
        next_id += 2
    return raw


def fixture_datamodule(fixtures_dir: Path, tmp_path: Path, dataset: str, **kwargs) -> tuple[PoseDataModule, Path]:
    folder, name = FIXTURES[dataset]
    ann = tmp_path / f"{dataset}_with_ignored.json"
    ann.write_text(json.dumps(with_ignored_annotations(json.loads((fixtures_dir / folder / name).read_text()))))
    images = str(fixtures_dir / folder)
    datamodule = PoseDataModule(
        keypoints=dataset,
        root=str(tmp_path),
        splits={s: {"ann": ann.name, "images": images} for s in ("train", "val", "test")},
        split={"mode": "full"},
        input_size=(256, 256),
        heatmap_size=(64, 64),
        coarse_size=None,
        batch_size=2,
        num_workers=0,
        **kwargs,
    )
    return datamodule, ann


def pycocotools_stats(annotation_file: Path, results: list[dict], sigmas) -> np.ndarray:
    """pycocotools run directly on the unmodified file, as the official evaluator does."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


# Per instance (in dataset order): Gaussian noise on its keypoints (crop pixels) and the peak of its
# heatmaps (its score). The first animal is a confident miss that overlaps ignored ground truth; the
# second a less confident hit: officially the miss is ignored, not a false positive ranked first.
PERTURBATIONS = [(60.0, 1.0), (3.0, 0.8)]


def perturbed_heatmaps(datamodule: PoseDataModule, batch: dict, rng: np.random.Generator, scale: float) -> torch.Tensor:
    """Heatmaps whose decoded keypoints are the ground truth moved by noise, with per-instance scores
    (:data:`PERTURBATIONS`, by the instance's position in the validation set)."""
    positions = {inst.id: i for i, inst in enumerate(datamodule.datasets["val"].data.instances)}
    maps = []
    for keypoints, instance in zip(batch["keypoints"].numpy(), batch["instance_id"].tolist()):
        noise, peak = PERTURBATIONS[positions[instance] % len(PERTURBATIONS)]
        noisy = keypoints.copy()
        noisy[:, :2] += rng.normal(0, noise * scale, (len(noisy), 2))
        noisy[:, 2] = 2
        maps.append(datamodule.codec.encode(noisy)["heatmap"] * peak)
    return torch.from_numpy(np.stack(maps))


@pytest.mark.parametrize("dataset", sorted(FIXTURES))
@pytest.mark.parametrize("noise_scale", [0.5, 1.0])
def test_metric_equals_pycocotools_on_the_unmodified_file_with_ignored_annotations(
    fixtures_dir, tmp_path, dataset, noise_scale
):
    datamodule, ann = fixture_datamodule(fixtures_dir, tmp_path, dataset)
    datamodule.setup("validate")
    spec = get_keypoint_spec(dataset)
    # The module builds its validation metric exactly so: the data module's ground truth of the stage.
    metric = KeypointAPMetric(spec, datamodule.ground_truth("val"), results_path=tmp_path / "results.json")
    rng = np.random.default_rng(0)
    for batch in datamodule.val_dataloader():
        metric.update(perturbed_heatmaps(datamodule, batch, rng, noise_scale), batch)
    ours = metric.compute()
    results = json.loads((tmp_path / "results.json").read_text())
    direct = pycocotools_stats(ann, results, spec.sigmas)
    assert [float(ours[k]) for k in ("AP", "AP50", "AP75", "APM", "APL", "AR")] == pytest.approx(
        [direct[i] for i in (0, 1, 2, 3, 4, 5)], abs=0
    )
    assert float(ours["AP"]) > 0


def test_scoring_without_the_ignored_annotations_would_give_another_ap(fixtures_dir, tmp_path):
    # What evaluating only the loaded instances (keypoint-less and crowd records dropped) gives: the
    # predictions that match ignored GT become false positives. The test above would catch that.
    datamodule, ann = fixture_datamodule(fixtures_dir, tmp_path, "animalpose")
    datamodule.setup("validate")
    spec = get_keypoint_spec("animalpose")
    data = datamodule.stage_data("val")
    instances_only = data.ground_truth()
    usable = {inst.id for inst in data.instances}
    instances_only["annotations"] = [a for a in instances_only["annotations"] if a["id"] in usable]
    full = KeypointAPMetric(spec, datamodule.ground_truth("val"))
    dropped = KeypointAPMetric(spec, instances_only)
    for metric in (full, dropped):
        rng = np.random.default_rng(0)
        for batch in datamodule.val_dataloader():
            metric.update(perturbed_heatmaps(datamodule, batch, rng, 1.0), batch)
    assert float(full.compute()["AP"]) > float(dropped.compute()["AP"])


@pytest.mark.parametrize("dataset", sorted(FIXTURES))
def test_eval_entry_point_equals_pycocotools_on_the_unmodified_file(fixtures_dir, tmp_path, dataset):
    from clamp.train import train

    folder, name = FIXTURES[dataset]
    ann = tmp_path / "data" / "annotations.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(with_ignored_annotations(json.loads((fixtures_dir / folder / name).read_text()))))
    splits = [
        f"data.splits.{stage}.{key}={value}"
        for stage in ("train", "val", "test")
        for key, value in (("ann", "annotations.json"), ("images", fixtures_dir / folder))
    ]
    train(
        compose_train(
            fast_overrides(
                tmp_path / "data",
                tmp_path / "run",
                "data=custom",
                f"data.keypoints={dataset}",
                "trainer.max_epochs=1",
                *splits,
            )
        )
    )
    result = run_cli(
        "-m",
        "clamp.eval",
        f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    direct = pycocotools_stats(ann, results, get_keypoint_spec(dataset).sigmas)
    assert [metrics[k] for k in ("AP", "AP50", "AP75", "APM", "APL", "AR")] == list(direct[:6])


def synthetic_datamodule(root: Path, tmp_path: Path, split: dict, test_ann: str) -> PoseDataModule:
    splits = {
        "train": {"ann": "annotations/ap10k-train-split1.json", "images": "data"},
        "val": {"ann": "annotations/ap10k-val-split1.json", "images": "data"},
        "test": {"ann": test_ann, "images": "data"},
    }
    return PoseDataModule(
        keypoints="ap10k",
        root=str(root),
        splits=splits,
        split=split,
        input_size=(64, 64),
        heatmap_size=(16, 16),
        coarse_size=None,
        batch_size=4,
        num_workers=0,
        manifest_path=str(tmp_path / "split_manifest.json"),
    )


def test_manifest_records_the_test_file_that_is_scored(synthetic_root, tmp_path):
    from collections import Counter

    test = json.loads((synthetic_root / "annotations" / "ap10k-test-split1.json").read_text())
    families = {c["id"]: c["supercategory"] for c in test["categories"]}
    test_family = Counter(families[a["category_id"]] for a in test["annotations"]).most_common(1)[0][0]
    datamodule = synthetic_datamodule(
        synthetic_root,
        tmp_path,
        {"mode": "family", "train_family": "Bovidae", "test_family": test_family},
        "annotations/ap10k-test-split1.json",
    )
    datamodule.setup("test")
    manifest = json.loads((tmp_path / "split_manifest.json").read_text())
    test_part = manifest["parts"]["test"]
    assert manifest["sources"]["test"]["file"] == "ap10k-test-split1.json"
    assert manifest["sources"]["val"]["file"] == "ap10k-val-split1.json"
    scored = sorted(inst.id for inst in datamodule.datasets["test"].data.instances)
    assert scored == test_part["instance_ids"] and scored
    assert sorted({img["id"] for img in datamodule.ground_truth("test")["images"]}) == test_part["image_ids"]
    assert set(test_part["family_counts"]) == {test_family}


def test_family_ground_truth_keeps_only_the_test_family_and_its_ignored_annotations(synthetic_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "annotations", root / "annotations")
    (root / "data").symlink_to(synthetic_root / "data")
    val = json.loads((root / "annotations" / "ap10k-val-split1.json").read_text())
    families = {c["id"]: c["supercategory"] for c in val["categories"]}
    canid = next(a for a in val["annotations"] if families[a["category_id"]] == "Canidae")
    felid = next(c for c, f in families.items() if f == "Felidae")
    val["annotations"] += [
        {**canid, "id": 10**6, "keypoints": [0] * 51, "num_keypoints": 0},
        {**canid, "id": 10**6 + 1, "category_id": felid, "keypoints": [0] * 51, "num_keypoints": 0},
        {**canid, "id": 10**6 + 2, "category_id": felid},
    ]  # a cat beside the dog
    (root / "annotations" / "ap10k-val-split1.json").write_text(json.dumps(val))
    datamodule = synthetic_datamodule(
        root,
        tmp_path,
        {"mode": "family", "train_family": "bovidae", "test_family": "canidae"},
        "annotations/ap10k-val-split1.json",
    )
    datamodule.setup("validate")
    gt = datamodule.ground_truth("val")
    assert {families[a["category_id"]] for a in gt["annotations"]} == {"Canidae"}
    assert {families[c["id"]] for c in gt["categories"]} == {"Canidae"}
    assert 10**6 in {a["id"] for a in gt["annotations"]} and not {10**6 + 1, 10**6 + 2} & {
        a["id"] for a in gt["annotations"]
    }
    # The other animals of those images are no prediction's species: kept in the ground truth, their
    # species would enter the per-species mean with AP 0.
    every_family = datamodule.data["val"].ground_truth(datamodule.manifest.parts["val"].image_ids)
    assert {families[a["category_id"]] for a in every_family["annotations"]} != {"Canidae"}
    scores = []
    for truth in (gt, every_family):
        metric = KeypointAPMetric("ap10k", truth)
        for batch in datamodule.val_dataloader():
            metric.update(batch["heatmap"], batch)
        scores.append(float(metric.compute()["AP"]))
        if truth is gt:
            assert {row["family"] for row in metric.last_report["per_species"].values()} == {"Canidae"}
    assert scores[0] > 0.8 and scores[0] > scores[1]


def test_a_gelu_backbone_round_trips_through_its_checkpoint_with_identical_heatmaps(
    synthetic_root, tmp_path, monkeypatch
):
    from open_clip.transformer import QuickGELU

    import clamp
    from clamp.models import clip_backbone
    from clamp.train import train

    # A tag that builds GELU, as every laion* tag does (offline here: the tag resolves to a local file).
    weights = tmp_path / "tiny_gelu.pt"
    torch.save(clip_backbone.load_open_clip("tiny-rn", None, image_size=64, quick_gelu=False).state_dict(), weights)
    monkeypatch.setattr(clip_backbone, "resolve_pretrained", lambda arch, pretrained, tags=True: (weights, False))
    train(
        compose_train(
            fast_overrides(
                synthetic_root,
                tmp_path / "run",
                "backbone.pretrained=laion_style_tag",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=2",
            )
        )
    )
    rebuilt = clamp.load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert not isinstance(rebuilt.text_encoder.transformer.resblocks[0].mlp.gelu, QuickGELU)
    state = {
        k[len("model.") :]: v
        for k, v in torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"].items()
    }
    trained = clamp.create_model("clamp_tiny_rn", quick_gelu=False, input_size=64, heatmap_size=16).eval()
    trained.load_state_dict(state)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(images).heatmaps, trained(images).heatmaps)


@pytest.mark.parametrize("grid, stride", [(8, 32), (16, 16)])  # RN50 and ViT-B/16 at 256 px
def test_bilinear_score_map_upsampling_puts_each_cell_where_the_targets_do(grid, stride):
    from clamp.codec import decode_keypoints
    from clamp.models.heads import SpatialHead

    head = SpatialHead(1, (64, 64), mode="bilinear")
    cells = torch.arange(grid, dtype=torch.float32)
    for cy in range(grid):
        for cx in range(grid):
            # A score map peaking at the cell of a keypoint at input pixel (cx, cy) * stride.
            score = torch.exp(-((cells[None, :] - cx) ** 2 + (cells[:, None] - cy) ** 2) / 2.0)[None, None]
            peak = decode_keypoints(head(score), input_size=(256, 256))[0, 0, :2] / 4.0  # heatmap pixels
            assert torch.allclose(peak, torch.tensor([cx, cy], dtype=peak.dtype) * stride / 4.0, atol=0.25)


def test_the_coarse_target_difference_script_counts_shares_of_labelled_points(synthetic_root):
    import importlib.util

    script_path = REPO_ROOT / "scripts" / "official_differences.py"
    spec = importlib.util.spec_from_file_location("official_differences", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = script.measure(synthetic_root, epochs=1)
    rn50, vit = report["RN50 (8x8)"], report["ViT-B/16 (16x16)"]
    assert rn50["labelled_points"] == vit["labelled_points"] > 100
    # Coarser cells put more points in the border cells where the official truncation moves peaks.
    assert 0 < vit["different_share"] < rn50["different_share"] < 1
    assert 0 < rn50["weight_without_peak_share"] <= rn50["different_share"]


def test_the_weight_decay_difference_counts_the_norms_the_official_configs_decay():
    import importlib.util

    script_path = REPO_ROOT / "scripts" / "official_differences.py"
    spec = importlib.util.spec_from_file_location("official_differences", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = script.weight_decay_differences()
    rn50 = clamp.create_model("clamp_rn50", keypoints="ap10k")
    norm_types = (torch.nn.BatchNorm2d, torch.nn.LayerNorm)
    unnamed_norm_weights = sum(
        module.weight.numel()
        for name, module in rn50.named_modules()
        if isinstance(module, norm_types) and "norm" not in name and module.weight.requires_grad
    )
    # RN50: the official "bias"/"norm" keys exempt every bias but decay the norm weights not named *norm*
    # (CLIP's bn1..3, the heads' BatchNorms, the prompt encoder's ln_*).
    assert report["clamp_rn50"]["different"] == unnamed_norm_weights
    assert 0 < report["clamp_vitb16"]["different"] < report["clamp_vitb16"]["trainable"] / 100
