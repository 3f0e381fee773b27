"""COCO OKS evaluation (clamp.evaluation.oks) and the DDP-safe KeypointAPMetric, on the real fixtures."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.utilities import dim_zero_cat

from clamp.evaluation.metric import KeypointAPMetric
from clamp.evaluation.oks import STAT_NAMES, SparseCOCOeval, evaluate_keypoints, main
from clamp.keypoints import ANIMALPOSE, AP10K, KeypointSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {
    "ap10k": ("ap10k_mini/test_ap10k.json", AP10K),
    "animalpose": ("animalpose_mini/test_animalpose.json", ANIMALPOSE),
}
HEATMAP = 64
ANTELOPE, JAGUAR = 1, 26


def load_gt(fixtures_dir: Path, name: str) -> tuple[dict, KeypointSpec]:
    path, spec = FIXTURES[name]
    return json.loads((fixtures_dir / path).read_text()), spec


def noisy_results(gt: dict, k: int, sigma: float, noisy_categories: set[int] | None = None) -> list[dict]:
    """GT keypoints + N(0, sigma) pixel noise from a fresh ``default_rng(0)``, all scores 1.0.

    How datasets_and_eval.md §3 made its reference numbers: one (K, 2) draw per annotation, in file
    order, added to every keypoint (unlabelled ones too, which OKS ignores).
    """
    rng = np.random.default_rng(0)
    results = []
    for ann in gt["annotations"]:
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3).copy()
        noise = rng.normal(0.0, sigma, (k, 2))
        if noisy_categories is None or ann["category_id"] in noisy_categories:
            kpts[:, :2] += noise
        kpts[:, 2] = 1.0
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "keypoints": kpts.reshape(-1).tolist(),
                "score": 1.0,
            }
        )
    return results


def pycocotools_eval(gt: dict, results: list[dict], sigmas, cat_ids: list[int] | None = None) -> COCOeval:
    """The direct pycocotools computation every number here is compared with."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        E = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "keypoints")
        E.params.kpt_oks_sigmas = np.array(sigmas)
        if cat_ids is not None:
            E.params.catIds = cat_ids
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def stats(report: dict) -> list[float]:
    return [report[k] for k in STAT_NAMES]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_gt_as_prediction_gives_ap_one(fixtures_dir: Path, name: str) -> None:
    gt, spec = load_gt(fixtures_dir, name)
    report = evaluate_keypoints(gt, noisy_results(gt, spec.num_keypoints, 0.0), spec.sigmas)
    assert report["AP"] == pytest.approx(1.0) and report["AR"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "sigma", "expected"),
    [("ap10k", 5, 1.0), ("ap10k", 20, 0.8), ("animalpose", 5, 0.9505), ("animalpose", 20, 0.4515)],
)
def test_seeded_noise_reproduces_the_reference_aps(
    fixtures_dir: Path, name: str, sigma: float, expected: float
) -> None:
    gt, spec = load_gt(fixtures_dir, name)
    report = evaluate_keypoints(gt, noisy_results(gt, spec.num_keypoints, sigma), spec.sigmas)
    assert report["AP"] == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_evaluate_keypoints_equals_direct_pycocotools_exactly(fixtures_dir: Path, name: str, tmp_path: Path) -> None:
    gt, spec = load_gt(fixtures_dir, name)
    results = noisy_results(gt, spec.num_keypoints, 20.0)
    direct = pycocotools_eval(gt, results, spec.sigmas).stats.tolist()
    assert stats(evaluate_keypoints(gt, results, spec.sigmas)) == direct
    (tmp_path / "dt.json").write_text(json.dumps(results))
    gt_path = fixtures_dir / FIXTURES[name][0]
    assert stats(evaluate_keypoints(gt_path, tmp_path / "dt.json", spec.sigmas)) == direct


def test_per_species_and_per_family_equal_cocoeval_restricted_to_them(fixtures_dir: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    results = noisy_results(gt, spec.num_keypoints, 20.0)
    report = evaluate_keypoints(gt, results, spec.sigmas)
    assert sorted(report["per_species"]) == [ANTELOPE, JAGUAR]
    assert report["per_species"][JAGUAR]["name"] == "jaguar"
    assert sorted(report["per_family"]) == ["Bovidae", "Felidae"]
    for cid, family in ((ANTELOPE, "Bovidae"), (JAGUAR, "Felidae")):
        alone = pycocotools_eval(gt, results, spec.sigmas, cat_ids=[cid]).stats.tolist()
        assert stats(report["per_species"][cid]) == alone
        assert stats(report["per_family"][family]) == alone
    assert report["per_family"]["Bovidae"]["AP"] != report["per_family"]["Felidae"]["AP"]
    # A family holding every species is the whole evaluation.
    merged = evaluate_keypoints(gt, results, spec.sigmas, family_of={ANTELOPE: "all", JAGUAR: "all"})
    assert merged["per_family"]["all"]["num_species"] == 2
    assert stats(merged["per_family"]["all"]) == stats(report)


def test_ap_is_the_mean_over_species_not_pooled(fixtures_dir: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    # Antelope exact, jaguar noisy: datasets_and_eval.md §4.2's demo, 0.9 = mean(1.0, 0.8).
    report = evaluate_keypoints(gt, noisy_results(gt, spec.num_keypoints, 40.0, {JAGUAR}), spec.sigmas)
    assert report["per_species"][ANTELOPE]["AP"] == pytest.approx(1.0)
    assert report["per_species"][JAGUAR]["AP"] == pytest.approx(0.8)
    assert report["AP"] == pytest.approx(0.9)


def test_wrong_category_ids_never_match(fixtures_dir: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    results = noisy_results(gt, spec.num_keypoints, 0.0)
    for r in results:
        r["category_id"] = ANTELOPE
    report = evaluate_keypoints(gt, results, spec.sigmas)
    assert report["AP"] == pytest.approx(0.5)  # the jaguar's pose, labelled antelope, matches nothing
    assert report["per_species"][JAGUAR]["AP"] == 0.0


def test_empty_results_give_zeros_with_a_warning(fixtures_dir: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    with pytest.warns(UserWarning, match="no keypoint results"):
        report = evaluate_keypoints(gt, [], spec.sigmas)
    assert stats(report) == [0.0] * len(STAT_NAMES)


def test_malformed_results_raise_errors_naming_the_entry(fixtures_dir: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    results = noisy_results(gt, spec.num_keypoints, 0.0)
    short = copy.deepcopy(results)
    short[1]["keypoints"] = short[1]["keypoints"][:-3]
    with pytest.raises(ValueError, match=r"entry 1 .*48 keypoint values, expected 51"):
        evaluate_keypoints(gt, short, spec.sigmas)
    unknown = copy.deepcopy(results)
    unknown[0]["image_id"] = 999
    with pytest.raises(ValueError, match="entry 0 has image_id 999"):
        evaluate_keypoints(gt, unknown, spec.sigmas)
    with pytest.raises(ValueError, match="annotation id .* 51 keypoint values, expected 60"):
        evaluate_keypoints(gt, results, ANIMALPOSE.sigmas)


def test_cli_prints_the_six_keys_and_matches_the_library(fixtures_dir: Path, tmp_path: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "animalpose")
    results = noisy_results(gt, spec.num_keypoints, 20.0)
    (tmp_path / "dt.json").write_text(json.dumps(results))
    gt_path = fixtures_dir / FIXTURES["animalpose"][0]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clamp.evaluation.oks",
            "--gt",
            str(gt_path),
            "--dt",
            str(tmp_path / "dt.json"),
            "--dataset",
            "animalpose",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    printed = json.loads(proc.stdout)
    assert {"AP", "AP50", "AP75", "APM", "APL", "AR"} <= set(printed)
    assert stats(printed) == pycocotools_eval(gt, results, spec.sigmas).stats.tolist()


def test_cli_reports_bad_input_in_one_line_with_nonzero_exit(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gt_path = fixtures_dir / FIXTURES["ap10k"][0]
    assert main(["--gt", str(gt_path), "--dt", str(tmp_path / "missing.json"), "--dataset", "ap10k"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.json" in err and "Traceback" not in err
    gt, spec = load_gt(fixtures_dir, "ap10k")
    (tmp_path / "dt.json").write_text(json.dumps(noisy_results(gt, spec.num_keypoints, 0.0)))
    assert main(["--gt", str(gt_path), "--dt", str(tmp_path / "dt.json"), "--dataset", "animalpose"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected 60" in err


# ----------------------------------------------------------------------------- KeypointAPMetric


def crop_batch(gt: dict, spec: KeypointSpec, predictions: dict[int, np.ndarray], order: list[int]) -> tuple:
    """Heatmaps whose decoded, back-mapped keypoints are known exactly, plus their sample dict.

    Each instance gets a 1.25-padded square crop around its GT box; each predicted keypoint is
    rounded to a quarter heatmap pixel (never .5), where a sigma-2 Gaussian decodes exactly.
    Returns heatmaps, batch dict and the expected image coordinates (N, K, 2).
    """
    anns = {a["id"]: a for a in gt["annotations"]}
    heatmaps, centers, scales, expected = [], [], [], []
    xs, ys = np.meshgrid(np.arange(HEATMAP), np.arange(HEATMAP))
    for inst in order:
        x, y, w, h = anns[inst]["bbox"]
        center = np.array([x + w / 2, y + h / 2])
        scale = np.full(2, max(w, h) * 1.25)
        hm_xy = (predictions[inst] - (center - scale / 2)) * HEATMAP / scale
        hm_xy = np.clip(np.round(hm_xy * 4) / 4, 2, HEATMAP - 3)
        hm_xy += np.where(hm_xy % 1 == 0.5, 0.25, 0.0)
        heatmaps.append(np.exp(-((xs - hm_xy[:, :1, None]) ** 2 + (ys - hm_xy[:, 1:, None]) ** 2) / 8))
        centers.append(center)
        scales.append(scale)
        expected.append(hm_xy * scale / HEATMAP + center - scale / 2)
    batch = {
        "center": torch.tensor(np.array(centers), dtype=torch.float32),
        "scale": torch.tensor(np.array(scales), dtype=torch.float32),
        "image_id": torch.tensor([anns[i]["image_id"] for i in order]),
        "instance_id": torch.tensor(order),
        "category_id": torch.tensor([anns[i]["category_id"] for i in order]),
        "bbox_score": torch.ones(len(order)),
        "rotation": torch.zeros(len(order)),
    }
    return torch.tensor(np.array(heatmaps), dtype=torch.float32), batch, np.array(expected)


def with_second_antelope(gt: dict) -> dict:
    """The AP-10K fixture plus a second, shifted antelope in image 4 (3 instances, 2 in one image)."""
    gt = copy.deepcopy(gt)
    ann = copy.deepcopy(next(a for a in gt["annotations"] if a["category_id"] == ANTELOPE))
    kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    kpts[kpts[:, 2] > 0, 0] += 150
    ann.update(id=7, keypoints=kpts.reshape(-1).tolist(), bbox=[ann["bbox"][0] + 150, *ann["bbox"][1:]])
    gt["annotations"].append(ann)
    return gt


def perturbed_predictions(gt: dict, spec: KeypointSpec, sigma: float) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        a["id"]: np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        + rng.normal(0.0, sigma, (spec.num_keypoints, 2))
        for a in gt["annotations"]
    }


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_metric_equals_direct_pycocotools_on_perturbed_predictions(
    fixtures_dir: Path, name: str, tmp_path: Path
) -> None:
    gt, spec = load_gt(fixtures_dir, name)
    order = [a["id"] for a in gt["annotations"]]
    heatmaps, batch, expected = crop_batch(gt, spec, perturbed_predictions(gt, spec, 15.0), order)
    metric = KeypointAPMetric(spec, gt, results_path=tmp_path / "results.json")
    metric.update(heatmaps, batch)
    values = metric.compute()
    written = json.loads((tmp_path / "results.json").read_text())
    # Results come in (image id, instance id) order.
    by_image = sorted(range(len(order)), key=lambda i: (int(batch["image_id"][i]), order[i]))
    np.testing.assert_allclose(
        np.array([r["keypoints"] for r in written]).reshape(len(order), -1, 3)[..., :2], expected[by_image], atol=1e-3
    )
    direct = pycocotools_eval(gt, written, spec.sigmas).stats.tolist()
    assert [values[k].item() for k in STAT_NAMES] == direct == stats(metric.last_report)
    cli_style = evaluate_keypoints(fixtures_dir / FIXTURES[name][0], tmp_path / "results.json", spec.sigmas)
    assert stats(cli_style) == direct


def two_rank_gather(other: KeypointAPMetric):
    """A stand-in for torch.distributed all-gather: this process is rank 0, ``other`` is rank 1."""
    pending = [dim_zero_cat(getattr(other, name)) for name in other._defaults]

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [tensor, pending.pop(0)]

    gather.pending = pending
    return gather


@pytest.mark.parametrize("nms_threshold", [0.9, None])
def test_metric_gives_the_same_numbers_on_two_ranks_with_padded_duplicates(
    fixtures_dir: Path, tmp_path: Path, nms_threshold: float | None
) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    gt = with_second_antelope(gt)
    predictions = perturbed_predictions(gt, spec, 20.0)
    ids = [a["id"] for a in gt["annotations"]]

    single = KeypointAPMetric(spec, gt, results_path=tmp_path / "single.json", nms_threshold=nms_threshold)
    for part in (ids[:2], ids[2:]):
        single.update(*crop_batch(gt, spec, predictions, part)[:2])
    expected = single.compute()

    # DistributedSampler(shuffle=False) on 2 ranks: rank 0 gets [0, 2], rank 1 gets [1, 0] (padding).
    rank1 = KeypointAPMetric(spec, gt, nms_threshold=nms_threshold)
    rank1.update(*crop_batch(gt, spec, predictions, [ids[1], ids[0]])[:2])
    gather = two_rank_gather(rank1)
    rank0 = KeypointAPMetric(
        spec,
        gt,
        results_path=tmp_path / "ddp.json",
        nms_threshold=nms_threshold,
        dist_sync_fn=gather,
        distributed_available_fn=lambda: True,
    )
    rank0.update(*crop_batch(gt, spec, predictions, [ids[0], ids[2]])[:2])
    got = rank0.compute()

    assert not gather.pending  # every state really went through the (simulated) all-gather
    assert {k: v.item() for k, v in got.items()} == {k: v.item() for k, v in expected.items()}
    assert (tmp_path / "ddp.json").read_text() == (tmp_path / "single.json").read_text()
    assert len(json.loads((tmp_path / "ddp.json").read_text())) == 3


def test_metric_rejects_heatmaps_with_the_wrong_keypoint_count(fixtures_dir: Path) -> None:
    gt, spec = load_gt(fixtures_dir, "ap10k")
    first = [gt["annotations"][0]["id"]]
    heatmaps, batch, _ = crop_batch(gt, spec, perturbed_predictions(gt, spec, 0.0), first)
    with pytest.raises(ValueError, match=r"expected heatmaps \(B, 20, H, W\) for 'animalpose'"):
        KeypointAPMetric(ANIMALPOSE, gt).update(heatmaps, batch)
    with pytest.raises(KeyError, match="center"):
        KeypointAPMetric(spec, gt).update(heatmaps, {k: v for k, v in batch.items() if k != "center"})


def many_species_gt_and_results(seed: int = 0) -> tuple[dict, list[dict]]:
    """Six species, one per image, 1-3 animals (some keypoint-less or crowd); results with misses,
    false positives on other images and results of a species on an image without it."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, 61):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        species = int(rng.integers(1, 7))
        for _ in range(int(rng.integers(1, 4))):
            x, y, w, h = rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(40, 300), rng.uniform(40, 250)
            points = np.stack([x + rng.uniform(0, w, 17), y + rng.uniform(0, h, 17)], axis=1)
            visible = rng.random(17) < 0.8
            kind = rng.random()
            keypoints = np.concatenate([points * visible[:, None], 2.0 * visible[:, None]], axis=1)
            if kind < 0.1:
                keypoints[:] = 0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": species,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(0.1 <= kind < 0.15),
                    "num_keypoints": int((keypoints[:, 2] > 0).sum()),
                    "keypoints": keypoints.ravel().tolist(),
                }
            )
            if rng.random() < 0.85:
                guess = points + rng.normal(0, 0.1 * np.sqrt(w * h), points.shape)
                score = np.full((17, 1), 1.0)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": species,
                        "score": float(rng.uniform(0.2, 1)),
                        "keypoints": np.concatenate([guess, score], axis=1).ravel().tolist(),
                    }
                )
        if rng.random() < 0.3:  # a result of another species where that species has no GT
            guess = np.concatenate([rng.uniform(0, 400, (17, 2)), np.ones((17, 1))], axis=1)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 7)),
                    "score": float(rng.uniform(0, 1)),
                    "keypoints": guess.ravel().tolist(),
                }
            )
    categories = [
        {
            "id": c,
            "name": f"s{c}",
            "supercategory": f"f{c % 2}",
            "keypoints": list(AP10K.keypoint_names),
            "skeleton": [],
        }
        for c in range(1, 7)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}, results


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_evaluation_equals_cocoeval_array_for_array(seed):
    gt, results = many_species_gt_and_results(seed)
    evaluators = {}
    for cls in (COCOeval, SparseCOCOeval):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = copy.deepcopy(gt)
            coco.createIndex()
            evaluator = cls(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
            evaluator.params.kpt_oks_sigmas = np.asarray(AP10K.sigmas)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        evaluators[cls] = evaluator
    plain, sparse = evaluators[COCOeval], evaluators[SparseCOCOeval]
    assert sum(e is not None for e in plain.evalImgs) < len(plain.evalImgs) / 3  # mostly empty pairs
    assert len(sparse.evalImgs) == len(plain.evalImgs)
    for ours, theirs in zip(sparse.evalImgs, plain.evalImgs):
        assert (ours is None) == (theirs is None)
    for key in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(sparse.eval[key], plain.eval[key])
    np.testing.assert_array_equal(sparse.stats, plain.stats)
    assert 0 < plain.stats[0] < 1


def test_evaluation_leaves_the_callers_records_unchanged():
    gt, results = many_species_gt_and_results(2)
    before = copy.deepcopy((gt, results))
    evaluate_keypoints(gt, results, AP10K.sigmas)
    assert (gt, results) == before
