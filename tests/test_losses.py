"""Losses: hand-computed cases for L_pred/L_spatial (Eq. 5), L_feature (Eq. 6-8) and L_total (Eq. 10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clamp.losses import clamp_total_loss, feature_contrastive_loss, heatmap_mse_loss, keypoint_features
from clamp.models.pose_models import PoseOutput


def one_hot_coarse(batch: int, joints: int, size: int, cells: list[tuple[int, int]]) -> torch.Tensor:
    """Coarse targets with a sigma-0.5 Gaussian peak (exactly 1) at each (x, y) cell, same for every image."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    maps = torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 0.5) for x, y in cells])
    return maps.expand(batch, joints, size, size).clone()


# ---------------------------------------------------------------- heatmap MSE (L_pred, L_spatial)


def test_perfect_heatmap_gives_zero_loss():
    target = torch.rand(2, 3, 8, 8)
    assert heatmap_mse_loss(target.clone(), target, torch.ones(2, 3)).item() == 0.0


def test_heatmap_loss_matches_mmpose_joints_mse_loop():
    pred, target, weight = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.tensor([[1.0, 0.0, 1.0]] * 2)
    expected = (
        sum(
            F.mse_loss(pred[:, j] * weight[:, j, None, None], target[:, j] * weight[:, j, None, None]) for j in range(3)
        )
        / 3
    )
    torch.testing.assert_close(heatmap_mse_loss(pred, target, weight), expected)
    # mmpose passes (B, K, 1) weights
    torch.testing.assert_close(heatmap_mse_loss(pred, target, weight[..., None]), expected)


def test_hand_computed_heatmap_loss_has_no_half_factor():
    pred, target = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    pred[0, 0, 0, 0] = 2.0  # one squared error of 4 among 8 elements
    assert heatmap_mse_loss(pred, target, torch.ones(1, 2)).item() == pytest.approx(0.5)


def test_zero_target_weight_removes_joint():
    target = torch.rand(1, 2, 4, 4)
    pred = target.clone()
    pred[:, 1] += 5.0
    assert heatmap_mse_loss(pred, target, torch.tensor([[1.0, 0.0]])).item() == 0.0
    assert heatmap_mse_loss(pred, target, torch.tensor([[1.0, 1.0]])).item() > 0.0


def test_heatmap_shape_mismatch_raises_clear_error():
    with pytest.raises(ValueError, match=r"pred \(1, 2, 4, 4\) and target \(1, 2, 8, 8\)"):
        heatmap_mse_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 8, 8), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"target_weight must have shape \(1, 2\)"):
        heatmap_mse_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(2))


# ---------------------------------------------------------------- keypoint features (Eq. 6)


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """(1, 2, h, w) features whose channels are the cell's x and y."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs, ys])[None]


def test_nearest_sampling_picks_the_peak_cell():
    dense = coordinate_grid(4, 4)
    coarse = one_hot_coarse(1, 2, 4, [(2, 1), (0, 3)])
    torch.testing.assert_close(
        keypoint_features(dense, coarse_heatmap=coarse), torch.tensor([[[2.0, 1.0], [0.0, 3.0]]])
    )


def test_nearest_sampling_without_peak_gives_zero_vector():
    coarse = one_hot_coarse(1, 1, 4, [(1, 1)]) * 0.9  # official: no cell equals 1 -> nothing selected
    assert keypoint_features(coordinate_grid(4, 4) + 1, coarse_heatmap=coarse).abs().sum() == 0


def test_bilinear_sampling_reads_cell_coordinates_x_over_stride():
    dense = coordinate_grid(4, 4)  # bilinear interpolation of a linear field is exact
    keypoints = torch.tensor([[[20.0, 4.0, 2.0], [16.0, 8.0, 2.0], [-30.0, 100.0, 1.0]]])
    feats = keypoint_features(dense, sampling="bilinear", keypoints=keypoints, feature_stride=8)
    # (20, 4) px -> cell (2.5, 0.5); (16, 8) -> exactly cell (2, 1); outside -> clamped to the border cells.
    torch.testing.assert_close(feats, torch.tensor([[[2.5, 0.5], [2.0, 1.0], [0.0, 3.0]]]))


def test_nearest_and_bilinear_agree_on_cell_centres():
    dense = torch.randn(2, 5, 4, 4)
    coarse = one_hot_coarse(2, 2, 4, [(3, 0), (1, 2)])
    keypoints = torch.tensor([[[48.0, 0.0], [16.0, 32.0]]] * 2)
    bilinear = keypoint_features(dense, sampling="bilinear", keypoints=keypoints, feature_stride=16)
    torch.testing.assert_close(keypoint_features(dense, coarse_heatmap=coarse), bilinear)


def test_unknown_sampling_and_wrong_grid_raise():
    with pytest.raises(ValueError, match="feature sampling must be one of"):
        keypoint_features(torch.zeros(1, 2, 4, 4), sampling="bicubic")
    with pytest.raises(ValueError, match=r"coarse_heatmap \(1, 3, 8, 8\) must be \(B=1, K, 4, 4\)"):
        keypoint_features(torch.zeros(1, 2, 4, 4), coarse_heatmap=torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------- feature contrastive loss (Eq. 7-8)


def test_uniform_similarities_give_log_k():
    k = 5
    dense = torch.randn(2, 8, 1, 1).expand(2, 8, 4, 4)  # all keypoint features equal, all prompts equal
    coarse = one_hot_coarse(2, k, 4, [(i % 4, i // 4) for i in range(k)])
    prompts = torch.randn(2, 1, 8).expand(2, k, 8)
    loss = feature_contrastive_loss(
        dense, prompts, torch.ones(2, k), logit_scale=math.log(1 / 0.07), coarse_heatmap=coarse
    )
    assert loss.item() == pytest.approx(math.log(k), rel=1e-5)


def test_weights_average_over_all_b_times_k_entries():
    k = 4
    coarse = one_hot_coarse(2, k, 4, [(i, 0) for i in range(k)])
    weights = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    loss = feature_contrastive_loss(torch.ones(2, 3, 4, 4), torch.ones(2, k, 3), weights, 2.0, coarse_heatmap=coarse)
    assert loss.item() == pytest.approx(math.log(k) * 3 / 8, rel=1e-5)  # 3 visible of B*K = 8, not of 3


def test_hand_computed_two_keypoint_case_with_invisible_zero_vector_as_negative():
    # Keypoint 0 at cell (0, 0) with feature e1; keypoint 1 invisible, no peak -> zero feature vector.
    dense = torch.zeros(1, 2, 2, 2)
    dense[0, 0, 0, 0] = 3.0
    coarse = torch.zeros(1, 2, 2, 2)
    coarse[0, 0, 0, 0] = 1.0
    prompts = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # e1 and (e1 + e2) / sqrt 2 after normalising
    loss = feature_contrastive_loss(dense, prompts, torch.tensor([[1.0, 0.0]]), logit_scale=0.0, coarse_heatmap=coarse)
    # image->text row 0: logits (1, 1/sqrt2) over prompts; text->image row 0: logits (1, 0) over features,
    # the invisible keypoint's zero vector still acting as a negative. Each mean is over B*K = 2 entries.
    i2t = -math.log(math.e / (math.e + math.exp(1 / math.sqrt(2))))
    t2i = -math.log(math.e / (math.e + 1.0))
    assert loss.item() == pytest.approx((i2t / 2 + t2i / 2) / 2, rel=1e-5)


def test_aligned_features_with_large_scale_give_near_zero_loss_and_gradients_flow():
    dense = torch.eye(3).reshape(1, 3, 1, 3).repeat(1, 1, 3, 1)  # column x holds e_x
    coarse = one_hot_coarse(1, 3, 3, [(0, 1), (1, 1), (2, 1)])
    prompts = torch.eye(3)[None].clone().requires_grad_(True)
    logit_scale = torch.tensor(math.log(100.0), requires_grad=True)
    loss = feature_contrastive_loss(dense, prompts, torch.ones(1, 3), logit_scale, coarse_heatmap=coarse)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-100)), abs=1e-6)
    feature_contrastive_loss(dense, prompts, torch.ones(1, 3), logit_scale, coarse_heatmap=coarse).backward()
    assert prompts.grad is not None and logit_scale.grad is not None


# ---------------------------------------------------------------- total loss (Eq. 10)


def fake_output_and_batch(k: int = 3) -> tuple[PoseOutput, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    out = PoseOutput(
        heatmaps=torch.rand(2, k, 8, 8),
        spatial_heatmaps=torch.rand(2, k, 8, 8),
        score_maps=torch.rand(2, k, 2, 2),
        dense_features=torch.randn(2, 4, 2, 2),
        global_embedding=torch.randn(2, 4),
        prompt_embeddings_initial=torch.randn(2, k, 4),
        prompt_embeddings=torch.randn(2, k, 4),
    )
    batch = {
        "image": torch.zeros(2, 3, 32, 32),
        "heatmap": torch.rand(2, k, 8, 8),
        "target_weight": torch.ones(2, k),
        "coarse_weight": torch.ones(2, k),
        "coarse_heatmap": one_hot_coarse(2, k, 2, [(0, 0), (1, 0), (1, 1)]),
        "keypoints": torch.tensor([[[0.0, 0.0, 2.0], [16.0, 0.0, 2.0], [16.0, 16.0, 2.0]]] * 2),
    }
    return out, batch


def test_total_loss_is_the_weighted_sum():
    out, batch = fake_output_and_batch()
    losses = clamp_total_loss(out, batch, alpha_spatial=0.4, alpha_feature=5e-4, logit_scale=2.0)
    pred = heatmap_mse_loss(out.heatmaps, batch["heatmap"], batch["target_weight"])
    spatial = heatmap_mse_loss(out.spatial_heatmaps, batch["heatmap"], batch["target_weight"])
    feature = feature_contrastive_loss(
        out.dense_features, out.prompt_embeddings, batch["coarse_weight"], 2.0, coarse_heatmap=batch["coarse_heatmap"]
    )
    torch.testing.assert_close(losses["loss_pred"], pred)
    torch.testing.assert_close(losses["loss_spatial"], spatial)
    torch.testing.assert_close(losses["loss_feature"], feature)
    torch.testing.assert_close(losses["loss"], pred + 0.4 * spatial + 5e-4 * feature)


def test_total_loss_switches_remove_terms():
    out, batch = fake_output_and_batch()
    only_pred = clamp_total_loss(
        out, batch, alpha_spatial=0.4, alpha_feature=5e-4, use_spatial=False, use_feature=False
    )
    assert only_pred["loss_spatial"] == 0 and only_pred["loss_feature"] == 0
    torch.testing.assert_close(only_pred["loss"], only_pred["loss_pred"])
    no_feature = clamp_total_loss(out, batch, alpha_spatial=0.4, alpha_feature=5e-4, use_feature=False)
    torch.testing.assert_close(no_feature["loss"], no_feature["loss_pred"] + 0.4 * no_feature["loss_spatial"])


def test_total_loss_bilinear_sampling_takes_stride_from_the_image():
    out, batch = fake_output_and_batch()
    nearest = clamp_total_loss(out, batch, alpha_spatial=1.0, alpha_feature=1.0, logit_scale=1.0)
    bilinear = clamp_total_loss(
        out, batch, alpha_spatial=1.0, alpha_feature=1.0, logit_scale=1.0, feature_sampling="bilinear"
    )
    # Keypoints sit on cell centres (stride 32 / 2 = 16), so both samplings select the same features.
    torch.testing.assert_close(bilinear["loss_feature"], nearest["loss_feature"])


def test_total_loss_without_auxiliary_outputs_raises_clear_error():
    out, batch = fake_output_and_batch()
    with pytest.raises(ValueError, match="no spatial_heatmaps"):
        clamp_total_loss(PoseOutput(heatmaps=out.heatmaps), batch, alpha_spatial=1.0, alpha_feature=1.0)
    with pytest.raises(ValueError, match="needs logit_scale"):
        clamp_total_loss(out, batch, alpha_spatial=1.0, alpha_feature=1.0)
    with pytest.raises(KeyError, match="batch has no 'coarse_heatmap'"):
        del batch["coarse_heatmap"]
        clamp_total_loss(out, batch, alpha_spatial=1.0, alpha_feature=1.0, logit_scale=1.0)
