"""Heatmap targets (clamp.data.targets) and the top-down dataset (clamp.data.dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from clamp.codec import HeatmapCodec
from clamp.data.coco import load_coco_keypoints
from clamp.data.dataset import EpochSampler, TopDownDataset, collate_samples, worker_init_fn
from clamp.data.targets import gaussian_heatmaps, keypoint_targets
from clamp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TopDownTransform, get_affine_transform
from clamp.keypoints import AP10K

K = AP10K.num_keypoints


def _mmpose_msra(joints, visible, heatmap_size, sigma):
    """mmpose 0.x ``_msra_generate_target`` (joints already in heatmap coordinates)."""
    w, h = heatmap_size
    target = np.zeros((len(joints), h, w), np.float32)
    weight = np.asarray(visible, np.float32).copy()
    tmp = sigma * 3
    for j, (x, y) in enumerate(joints):
        mu_x, mu_y = int(x + 0.5), int(y + 0.5)
        ul = [int(mu_x - tmp), int(mu_y - tmp)]
        br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weight[j] = 0
        if weight[j] > 0.5:
            size = 2 * tmp + 1
            xs = np.arange(0, size, 1, np.float32)
            ys = xs[:, None]
            x0 = y0 = size // 2
            g = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))
            g_x = max(0, -ul[0]), min(br[0], w) - ul[0]
            g_y = max(0, -ul[1]), min(br[1], h) - ul[1]
            img_x = max(0, ul[0]), min(br[0], w)
            img_y = max(0, ul[1]), min(br[1], h)
            target[j][img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return target, weight


@pytest.mark.parametrize("sigma, size", [(2.0, (64, 48)), (0.5, (16, 16)), (0.5, (8, 8))])
def test_heatmaps_equal_mmpose_msra_targets_up_to_and_beyond_the_edges(sigma, size):
    # Well beyond every edge, where the integer truncation of mmpose's patch bounds decides the result.
    rng = np.random.default_rng(0)
    xy = rng.uniform(-12, max(size) + 12, (400, 2))
    vis = rng.integers(0, 2, 400)
    ours, w_ours = gaussian_heatmaps(xy, vis, size, sigma=sigma)
    ref, w_ref = _mmpose_msra(xy, vis, size, sigma)
    assert ours.dtype == np.float32 and ours.shape == (400, size[1], size[0])
    np.testing.assert_array_equal(w_ours, w_ref)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert ((ours == 1.0).any(axis=(1, 2)) == (ref == 1.0).any(axis=(1, 2))).all()


def test_heatmap_weight_is_zero_for_unlabelled_or_fully_outside_points():
    # -7.6 rounds to heatmap pixel -7: the patch ends exactly at the left edge, so officially the
    # weight stays 1 with an all-zero target; -8.6 (pixel -8) is fully outside.
    xy = np.array(
        [[10.0, 10.0], [10.0, 10.0], [-8.6, 10.0], [-6.6, 10.0], [70.0, 10.0], [69.0, 10.0], [-7.6, 10.0], [10.0, -7.6]]
    )
    hm, w = gaussian_heatmaps(xy, np.array([2, 0, 2, 2, 1, 1, 2, 2]), (64, 64), sigma=2.0)
    np.testing.assert_array_equal(w, [1, 0, 0, 1, 0, 1, 1, 1])
    assert hm[1].max() == 0 and hm[2].max() == 0 and hm[3].max() > 0 and hm[5].max() > 0
    assert hm[6].max() == 0 and hm[7].max() == 0


def test_heatmap_argmax_recovers_keypoint_within_quantisation_step():
    rng = np.random.default_rng(1)
    kpts = np.concatenate([rng.uniform(0, 255, (K, 2)), np.full((K, 1), 2.0)], axis=1)
    hm, w = keypoint_targets(kpts, (256, 256), (64, 64), sigma=2.0)
    assert (w == 1).all()
    flat = hm.reshape(K, -1).argmax(axis=1)
    decoded = np.stack([flat % 64, flat // 64], axis=1) * 4.0
    assert np.abs(decoded - kpts[:, :2]).max() <= 2.0 + 1e-9
    assert np.allclose(hm.max(axis=(1, 2)), 1.0)


def test_corrected_coarse_target_peaks_at_rounded_cell_even_at_the_border():
    assert HeatmapCodec((256, 256), (64, 64), 2.0, (16, 16)).coarse_sigma == 0.5
    # Input pixels 3 and 20 round to coarse cells 0 and 1 (where the official code is off by one);
    # 250 rounds to cell 16 = off the grid.
    kpts = np.array([[3.0, 3.0, 2], [20.0, 100.0, 2], [250.0, 100.0, 2], [100.0, 100.0, 0]])
    hm, w = keypoint_targets(kpts, (256, 256), (16, 16), sigma=0.5, mode="corrected")
    np.testing.assert_array_equal(w, [1, 1, 0, 0])
    assert hm[0, 0, 0] == 1.0 and hm[1, 6, 1] == 1.0
    assert hm[2].max() == 0 and hm[3].max() == 0
    assert (hm == 1.0).sum() == 2


def test_official_coarse_target_shifts_border_cells_and_keeps_weight_without_a_peak():
    # The official default: cells 0 and 1 peak one cell further in; cell 16 (off the 16-cell grid)
    # keeps weight 1 with no cell at 1, so L_feature samples a zero vector there, as officially.
    kpts = np.array([[3.0, 3.0, 2], [20.0, 100.0, 2], [250.0, 100.0, 2], [100.0, 100.0, 0]])
    hm, w = keypoint_targets(kpts, (256, 256), (16, 16), sigma=0.5)
    np.testing.assert_array_equal(w, [1, 1, 1, 0])
    assert hm[0, 1, 1] == 1.0 and hm[1, 6, 2] == 1.0
    assert hm[2].max() < 1.0 and hm[3].max() == 0


IMAGE_SIZES = {1: (160, 120), 2: (100, 140)}


def _tiny_coco(root: Path, missing_image: bool = False) -> Path:
    """An AP-10K-layout file: 2 images (random noise), 3 instances, 17 keypoints."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True)
    (root / "data").mkdir()
    images, anns = [], []
    for iid, (w, h) in IMAGE_SIZES.items():
        name = f"{iid:012d}.jpg"
        images.append({"id": iid, "file_name": name, "width": w, "height": h})
        if not (missing_image and iid == 2):
            cv2.imwrite(str(root / "data" / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    for aid, iid in ((10, 1), (11, 1), (12, 2)):
        w, h = IMAGE_SIZES[iid]
        box = [5.0, 8.0, w * 0.6, h * 0.7]
        kp = np.zeros((K, 3))
        kp[:, 0] = rng.uniform(box[0], box[0] + box[2], K).round()
        kp[:, 1] = rng.uniform(box[1], box[1] + box[3], K).round()
        kp[:, 2] = 2
        kp[1] = 0
        anns.append(
            {
                "id": aid,
                "image_id": iid,
                "category_id": 1,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
                "num_keypoints": K - 1,
                "keypoints": kp.reshape(-1).tolist(),
            }
        )
    cats = [{"id": 1, "name": "antelope", "supercategory": "Bovidae", "keypoints": list(AP10K.keypoint_names)}]
    path = root / "annotations" / "tiny.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


CODEC = HeatmapCodec((64, 64), (16, 16), 2.0, (4, 4))
PLAIN_CODEC = HeatmapCodec((64, 64), (16, 16))


def _dataset(tmp_path: Path, training: bool = True, seed: int | None = 0, **kw) -> TopDownDataset:
    data = load_coco_keypoints(_tiny_coco(tmp_path), AP10K)
    return TopDownDataset(data, TopDownTransform(AP10K, (64, 64), training=training), CODEC, seed=seed, **kw)


def test_sample_dict_has_contract_keys_shapes_and_dtypes(tmp_path):
    ds = _dataset(tmp_path)
    assert len(ds) == 3
    sample = ds[2]
    expected = {
        "image": ((3, 64, 64), torch.float32),
        "heatmap": ((K, 16, 16), torch.float32),
        "target_weight": ((K,), torch.float32),
        "coarse_heatmap": ((K, 4, 4), torch.float32),
        "coarse_weight": ((K,), torch.float32),
        "keypoints": ((K, 3), torch.float32),
        "center": ((2,), torch.float32),
        "scale": ((2,), torch.float32),
        "rotation": ((), torch.float32),
        "image_id": ((), torch.int64),
        "instance_id": ((), torch.int64),
        "category_id": ((), torch.int64),
        "area": ((), torch.float32),
        "bbox_score": ((), torch.float32),
    }
    assert set(sample) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert isinstance(sample[key], torch.Tensor), key
        assert tuple(sample[key].shape) == shape and sample[key].dtype == dtype, key
    assert (int(sample["image_id"]), int(sample["instance_id"]), int(sample["category_id"])) == (2, 12, 1)
    assert float(sample["bbox_score"]) == 1.0 and sample["target_weight"][1] == 0
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["heatmap"].shape == (3, K, 16, 16) and batch["image_id"].dtype == torch.int64


def test_same_seed_reproduces_the_same_sample(tmp_path):
    a, b = _dataset(tmp_path / "a", seed=7), _dataset(tmp_path / "b", seed=7)
    sa, sb = a[0], b[0]
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert not torch.equal(a[0]["keypoints"], sa["keypoints"]) or not torch.equal(a[0]["image"], sa["image"])


def test_center_jitter_is_drawn_once_at_build_and_only_for_training(tmp_path):
    data = load_coco_keypoints(_tiny_coco(tmp_path), AP10K)
    train = TopDownTransform(AP10K, (64, 64), training=True)
    jittered = TopDownDataset(data, train, PLAIN_CODEC, seed=3, center_jitter_prob=1.0)
    same = TopDownDataset(data, train, PLAIN_CODEC, seed=3, center_jitter_prob=1.0)
    plain = TopDownDataset(data, TopDownTransform(AP10K, (64, 64)), PLAIN_CODEC, seed=3, center_jitter_prob=1.0)
    np.testing.assert_array_equal(jittered.centers, same.centers)
    np.testing.assert_array_equal(jittered.scales, plain.scales)
    shift = np.abs(jittered.centers - plain.centers)
    boxes = np.array([inst.bbox[2:] for inst in data.instances])
    assert (shift > 0).all() and (shift <= 0.2 * boxes + 1e-4).all()


def _first_samples(ds, init_fn):
    loader = DataLoader(ds, batch_size=1, sampler=[0, 0], num_workers=2, worker_init_fn=init_fn)
    return [batch["keypoints"][0] for batch in loader]


def test_dataloader_workers_draw_different_augmentations(tmp_path):
    ds = _dataset(tmp_path, seed=0)
    torch.manual_seed(0)
    w0, w1 = _first_samples(ds, worker_init_fn)  # batch i goes to worker i
    assert not torch.equal(w0, w1)
    w0_next_epoch, _ = _first_samples(ds, worker_init_fn)
    assert not torch.equal(w0, w0_next_epoch)
    torch.manual_seed(0)
    assert torch.equal(_first_samples(ds, worker_init_fn)[0], w0)
    # The pitfall this guards against: without reseeding, both workers copy one generator state.
    same0, same1 = _first_samples(ds, None)
    assert torch.equal(same0, same1)


def _epoch_keypoints(ds, sampler, workers):
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=collate_samples)
    return torch.cat([batch["keypoints"] for batch in loader])


def test_epoch_keys_give_the_same_samples_with_any_worker_count_and_after_a_resume(tmp_path):
    ds = _dataset(tmp_path, seed=0)
    sampler = EpochSampler(len(ds), shuffle=True, seed=0)
    sampler.set_epoch(3)
    straight = _epoch_keypoints(ds, sampler, workers=0)
    assert torch.equal(_epoch_keypoints(ds, sampler, workers=2), straight)
    sampler.resume(3, 1)  # one sample of epoch 3 consumed before the checkpoint
    assert torch.equal(_epoch_keypoints(ds, sampler, workers=2), straight[1:])
    sampler.set_epoch(4)
    assert not torch.equal(_epoch_keypoints(ds, sampler, workers=0), straight)
    assert len(sampler) == len(ds)


def test_epoch_sampler_shards_ranks_like_distributed_sampler():
    ranks = [list(EpochSampler(5, shuffle=False, num_replicas=2, rank=r)) for r in range(2)]
    assert [index for _, index in ranks[0]] == [0, 2, 4] and [index for _, index in ranks[1]] == [1, 3, 0]


def test_an_undecodable_image_becomes_a_skipped_marker_naming_the_file(tmp_path):
    data = load_coco_keypoints(_tiny_coco(tmp_path, missing_image=True), AP10K)
    ds = TopDownDataset(data, TopDownTransform(AP10K, (64, 64)), PLAIN_CODEC)
    assert "000000000002.jpg" in ds[2]["skipped"] and "not found" in ds[2]["skipped"]
    (tmp_path / "data" / "000000000002.jpg").write_bytes(b"not a jpeg")
    assert "000000000002.jpg" in ds[2]["skipped"] and "not an image" in ds[2]["skipped"]
    batch = collate_samples([ds[0], ds[2], ds[1]])
    assert batch["image"].shape[0] == 2 and len(batch["skipped"]) == 1


def test_dataset_rejects_mismatched_keypoint_spec(tmp_path):
    data = load_coco_keypoints(_tiny_coco(tmp_path), AP10K)
    with pytest.raises(ValueError, match="animalpose"):
        TopDownDataset(data, TopDownTransform("animalpose"), HeatmapCodec((256, 256), (64, 64)))


def test_ap10k_fixture_crop_is_rgb_and_heatmaps_decode_to_annotations(fixtures_dir):
    root = fixtures_dir / "ap10k_mini"
    data = load_coco_keypoints(root / "test_ap10k.json", AP10K, image_root=root)
    ds = TopDownDataset(data, TopDownTransform(AP10K, (256, 256)), HeatmapCodec((256, 256), (64, 64)))
    for index, inst in enumerate(data.instances):
        sample = ds[index]
        center, scale = sample["center"].numpy(), sample["scale"].numpy()
        # The crop equals the same warp of the image read independently as RGB by PIL.
        rgb = np.asarray(Image.open(data.image_path(inst.image_id)).convert("RGB"))
        ref = cv2.warpAffine(
            rgb, get_affine_transform(center, scale, 0.0, (256, 256)), (256, 256), flags=cv2.INTER_LINEAR
        )
        crop = sample["image"].numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
        assert np.abs(crop * 255.0 - ref).max() < 2.0
        # Contract decode: x_img = x_hm * scale_w / W_hm + center_x - scale_w / 2.
        labelled = sample["target_weight"].numpy() > 0
        assert labelled.sum() == inst.num_keypoints
        flat = sample["heatmap"].numpy().reshape(K, -1).argmax(axis=1)
        hm_xy = np.stack([flat % 64, flat // 64], axis=1).astype(np.float64)
        decoded = hm_xy * scale / 64 + center - scale / 2
        err = np.abs(decoded - inst.keypoints[:, :2])[labelled]
        assert (err <= 0.5 * scale / 64 + 1e-3).all()
