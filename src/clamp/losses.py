"""CLAMP training losses: L_pred and L_spatial (Eq. 5), L_feature (Eq. 6-8) and L_total (Eq. 10).

All losses are computed in float32 (safe under bf16 autocast). Conventions follow the official code
(``official_code_facts.md`` Sec. 2): mmpose ``JointsMSELoss(use_target_weight=True)`` for the heatmap
terms; nearest-cell keypoint features and a per-image symmetric InfoNCE for the feature term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from clamp.models.pose_models import PoseOutput

FEATURE_SAMPLING_MODES = ("nearest", "bilinear")
# The official mask is ``target_down == 1``: the coarse Gaussian's peak is exactly 1, its neighbours
# at most exp(-2) ~ 0.14 (sigma 0.5 cells), so any tolerance in between selects the same cell.
_PEAK_TOLERANCE = 1e-3


def _joint_weights(target_weight: Tensor, batch: int, joints: int, name: str) -> Tensor:
    """(B, K) or (B, K, 1) weights -> float (B, K), with a clear error for any other shape."""
    if target_weight.shape not in ((batch, joints), (batch, joints, 1)):
        raise ValueError(
            f"{name} must have shape ({batch}, {joints}) or ({batch}, {joints}, 1), got {tuple(target_weight.shape)}"
        )
    return target_weight.reshape(batch, joints).float()


def heatmap_mse_loss(pred: Tensor, target: Tensor, target_weight: Tensor) -> Tensor:
    """L_pred and L_spatial (Eq. 5): mmpose ``JointsMSELoss(use_target_weight=True)``.

    Per joint, the MSE of ``pred * w`` vs ``target * w`` averaged over batch x H x W; then summed over
    joints and divided by K (no 0.5 factor). ``pred``/``target`` (B, K, H, W), ``target_weight`` (B, K).
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"heatmap_mse_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
            "(B, K, H, W); is the dataset's heatmap size the model's heatmap_size?"
        )
    weight = _joint_weights(target_weight, pred.shape[0], pred.shape[1], "target_weight")[:, :, None, None]
    # Every joint averages over the same B*H*W elements, so sum_k mean_k / K is the overall mean.
    return (((pred.float() - target.float()) * weight) ** 2).mean()


def keypoint_features(
    dense_features: Tensor,
    *,
    sampling: str = "nearest",
    coarse_heatmap: Tensor | None = None,
    keypoints: Tensor | None = None,
    feature_stride: float | None = None,
) -> Tensor:
    """Eq. 6: F_keypoint, the dense features F (B, C, h, w) at the K ground-truth keypoints -> (B, K, C).

    ``sampling="nearest"`` (official): the cell where the coarse target (B, K, h, w) at the feature grid
    peaks at exactly 1, i.e. the rounded keypoint cell int(x / stride + 0.5). Where the official coarse
    target has no such cell (rounded cell off the grid) the feature is a zero vector, as officially.
    ``sampling="bilinear"`` (the paper's "grid sampling"): bilinear interpolation at cell coordinate
    x / ``feature_stride`` of ``keypoints`` (B, K, 2+) in input pixels, cell i centred at coordinate i,
    clamped to the border cells.
    """
    batch, _, height, width = dense_features.shape
    if sampling == "nearest":
        if coarse_heatmap is None:
            raise ValueError("keypoint_features(sampling='nearest') needs coarse_heatmap")
        if coarse_heatmap.ndim != 4 or coarse_heatmap.shape[0] != batch or coarse_heatmap.shape[-2:] != (height, width):
            raise ValueError(
                f"coarse_heatmap {tuple(coarse_heatmap.shape)} must be (B={batch}, K, {height}, {width}), "
                "the feature grid; generate it at input_size / model.feature_stride"
            )
        mask = (coarse_heatmap >= 1.0 - _PEAK_TOLERANCE).to(dense_features.dtype)
        return torch.einsum("bkhw,bchw->bkc", mask, dense_features)
    if sampling == "bilinear":
        if keypoints is None or feature_stride is None:
            raise ValueError("keypoint_features(sampling='bilinear') needs keypoints and feature_stride")
        if keypoints.ndim != 3 or keypoints.shape[0] != batch or keypoints.shape[-1] < 2:
            raise ValueError(f"keypoints must be (B={batch}, K, 2 or 3) in input pixels, got {tuple(keypoints.shape)}")
        cells = keypoints[..., :2].float() / feature_stride
        # align_corners=False: normalised -1 / 1 are the outer edges, cell i's centre is (2i + 1) / n - 1.
        size = torch.tensor([width, height], dtype=cells.dtype, device=cells.device)
        grid = ((2 * cells + 1) / size - 1).unsqueeze(2).to(dense_features.dtype)  # (B, K, 1, 2)
        sampled = F.grid_sample(dense_features, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.squeeze(-1).transpose(1, 2)
    raise ValueError(f"feature sampling must be one of {FEATURE_SAMPLING_MODES}, got '{sampling}'")


def feature_contrastive_loss(
    dense_features: Tensor,
    prompt_embeddings: Tensor,
    weights: Tensor,
    logit_scale: Tensor | float,
    *,
    sampling: str = "nearest",
    coarse_heatmap: Tensor | None = None,
    keypoints: Tensor | None = None,
    feature_stride: float | None = None,
) -> Tensor:
    """L_feature (Eq. 7-8): symmetric cross entropy between keypoint features and prompt embeddings.

    Per image, M = exp(logit_scale) * F_keypoint_hat . E_prompt_hat^T (B, K, K) on L2-normalised vectors
    (Eq. 7; zero vectors stay zero); CE over the K prompts of each keypoint feature (image->text) and
    over the K keypoint features of each prompt (text->image), label = own index. Each CE term is
    multiplied by ``weights`` (B, K) (visibility) and averaged over all B*K entries (official, not
    over the visible count); result = (i2t + t2i) / 2 (Eq. 8). Negatives are the other keypoints of the
    same image only.

    Official detail kept: an invisible keypoint's own rows get weight 0, but its feature (often a zero
    vector, logit 0) still appears as a negative in the text->image softmax of the other prompts.
    See :func:`keypoint_features` for ``sampling`` and its arguments.
    """
    feats = keypoint_features(
        dense_features,
        sampling=sampling,
        coarse_heatmap=coarse_heatmap,
        keypoints=keypoints,
        feature_stride=feature_stride,
    )
    batch, joints, _ = feats.shape
    if prompt_embeddings.shape != feats.shape:
        raise ValueError(
            f"prompt_embeddings {tuple(prompt_embeddings.shape)} must match the keypoint features "
            f"{tuple(feats.shape)} (B, K, C)"
        )
    weight = _joint_weights(weights, batch, joints, "weights")
    visual = F.normalize(feats.float(), dim=-1)
    text = F.normalize(prompt_embeddings.float(), dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=visual.device).exp()
    logits = scale * visual @ text.transpose(1, 2)  # (B, K visual, K prompts)
    labels = torch.arange(joints, device=logits.device).expand(batch, joints)
    # cross_entropy wants (B, classes, K): transposed logits give image->text, logits as-is text->image.
    image_to_text = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    text_to_image = F.cross_entropy(logits, labels, reduction="none")
    return ((image_to_text * weight).mean() + (text_to_image * weight).mean()) / 2


def _batch_tensor(batch: Mapping[str, Any], key: str) -> Tensor:
    if key not in batch:
        raise KeyError(
            f"clamp_total_loss: batch has no '{key}' (keys: {sorted(batch)}); the TopDownDataset "
            "sample dict provides it"
        )
    return batch[key]


def clamp_total_loss(
    output: PoseOutput,
    batch: Mapping[str, Any],
    *,
    alpha_spatial: float,
    alpha_feature: float,
    use_spatial: bool = True,
    use_feature: bool = True,
    feature_sampling: str = "nearest",
    logit_scale: Tensor | float | None = None,
    feature_stride: float | None = None,
) -> dict[str, Tensor]:
    """L_total (Eq. 10) = L_pred + alpha_spatial * L_spatial + alpha_feature * L_feature.

    ``batch`` holds the collated sample dict (``heatmap``, ``target_weight``; ``coarse_heatmap`` and
    ``coarse_weight`` for the feature term; ``keypoints`` and, unless ``feature_stride`` is given,
    ``image`` for bilinear sampling). L_spatial uses the full-resolution target and weights (official);
    L_feature uses the coarse (feature-grid) weights. ``use_spatial`` / ``use_feature`` switch the terms
    (Table 6; both off for SimpleBaseline, which has no auxiliary outputs); a switched-off term is
    reported as 0. ``logit_scale`` is the model's learnable log inverse temperature (``model.logit_scale``).

    Returns:
        ``{"loss", "loss_pred", "loss_spatial", "loss_feature"}`` (scalars; ``loss`` is the weighted sum).
    """
    heatmap = _batch_tensor(batch, "heatmap")
    target_weight = _batch_tensor(batch, "target_weight")
    loss_pred = heatmap_mse_loss(output.heatmaps, heatmap, target_weight)
    zero = loss_pred.new_zeros(())
    loss_spatial = loss_feature = zero
    if use_spatial:
        if output.spatial_heatmaps is None:
            raise ValueError(
                "use_spatial=True but the model output has no spatial_heatmaps (SimpleBaseline, "
                "or a CLAMP in eval mode without return_aux=True)"
            )
        loss_spatial = heatmap_mse_loss(output.spatial_heatmaps, heatmap, target_weight)
    if use_feature:
        if output.dense_features is None or output.prompt_embeddings is None:
            raise ValueError(
                "use_feature=True but the model output has no dense_features/prompt_embeddings "
                "(SimpleBaseline, or a CLAMP in eval mode without return_aux=True)"
            )
        if logit_scale is None:
            raise ValueError("use_feature=True needs logit_scale (the model's logit_scale parameter)")
        sampling_kwargs: dict[str, Any] = {}
        if feature_sampling == "nearest":
            sampling_kwargs["coarse_heatmap"] = _batch_tensor(batch, "coarse_heatmap")
        elif feature_sampling == "bilinear":
            if feature_stride is None:
                feature_stride = _batch_tensor(batch, "image").shape[-1] / output.dense_features.shape[-1]
            sampling_kwargs.update(keypoints=_batch_tensor(batch, "keypoints"), feature_stride=feature_stride)
        loss_feature = feature_contrastive_loss(
            output.dense_features,
            output.prompt_embeddings,
            _batch_tensor(batch, "coarse_weight"),
            logit_scale,
            sampling=feature_sampling,
            **sampling_kwargs,
        )
    total = loss_pred + alpha_spatial * loss_spatial + alpha_feature * loss_feature
    return {"loss": total, "loss_pred": loss_pred, "loss_spatial": loss_spatial, "loss_feature": loss_feature}
