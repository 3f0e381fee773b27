"""Heatmap heads: the SimpleBaseline keypoint predictor and the score-map upsampler of the spatial branch."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SPATIAL_UPSAMPLE_MODES = ("learned", "bilinear")


def num_upsampling_layers(grid_size: tuple[int, int], heatmap_size: tuple[int, int]) -> int:
    """Number of stride-2 deconvolutions taking a (w, h) feature grid to the (w, h) heatmap size."""
    ratios = {heatmap_size[0] / grid_size[0], heatmap_size[1] / grid_size[1]}
    ratio = ratios.pop()
    if ratios or ratio < 1 or not math.log2(ratio).is_integer():
        raise ValueError(
            f"Heatmap size {heatmap_size} is not the feature grid {grid_size} times one power of two; "
            "choose input_size / heatmap_size so that stride-2 deconvolutions reach the heatmap"
        )
    return int(math.log2(ratio))


class HeatmapHead(nn.Module):
    """mmpose ``TopdownHeatmapSimpleHead``: n x [deconv 4x4 s2 (no bias), BN, ReLU], then a 1x1 conv.

    ``init_std``: normal init std of the deconvs and final conv (mmpose: 0.001, BN weight 1 bias 0);
    ``None`` keeps PyTorch's default init (the official spatial-branch upsampler was never
    re-initialised).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_deconv: int,
        deconv_channels: int = 256,
        init_std: float | None = 0.001,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(channels, deconv_channels, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            channels = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, out_channels, kernel_size=1)
        if init_std is not None:
            self._init_weights(init_std)

    def _init_weights(self, std: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(x))


def upsample_grid_aligned(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (B, C, h, w) maps to ``size`` (W, H) with cell ``i`` at output ``i * W / w``.

    The project's convention is that feature cell ``i`` covers input pixel ``i * stride`` (the targets
    and the bilinear feature sampling use it), and heatmap pixel ``j`` is input pixel ``j * stride_hm``;
    so output pixel ``j`` samples the cell coordinate ``j * w / W``, clamped to the last cell.
    ``F.interpolate(align_corners=False)`` would put cell ``i`` at ``(i + 0.5) * W / w - 0.5`` instead:
    3.5 heatmap pixels off for RN50's 8 -> 64.
    """
    out = maps
    for axis, (source, target) in ((-1, (maps.shape[-1], size[0])), (-2, (maps.shape[-2], size[1]))):
        coord = torch.arange(target, device=maps.device, dtype=torch.float32) * (source / target)
        coord = coord.clamp(max=source - 1)
        low = coord.floor().long()
        high = (low + 1).clamp(max=source - 1)
        frac = (coord - low.float()).to(maps.dtype)
        shape = [1] * out.ndim
        shape[axis] = target
        frac = frac.view(shape)
        out = out.index_select(axis, low) * (1 - frac) + out.index_select(axis, high) * frac
    return out


class SpatialHead(nn.Module):
    """Upsample(S) of Eq. 5: score map (B, K, h, w) -> (B, K, Hh, Wh).

    ``mode="learned"`` (official ``upconv_head``): a :class:`HeatmapHead` K -> K with PyTorch default
    init. ``mode="bilinear"`` (the paper's wording): plain bilinear interpolation, no parameters, aligned
    with the targets (:func:`upsample_grid_aligned`).
    """

    def __init__(
        self,
        num_keypoints: int,
        heatmap_size: tuple[int, int],
        mode: str = "learned",
        num_deconv: int = 0,
        deconv_channels: int = 256,
    ) -> None:
        super().__init__()
        if mode not in SPATIAL_UPSAMPLE_MODES:
            raise ValueError(f"spatial_upsample must be one of {SPATIAL_UPSAMPLE_MODES}, got '{mode}'")
        self.mode = mode
        self.heatmap_size = tuple(heatmap_size)
        self.upsampler = (
            HeatmapHead(num_keypoints, num_keypoints, num_deconv, deconv_channels, init_std=None)
            if mode == "learned"
            else None
        )

    def forward(self, score_maps: Tensor) -> Tensor:
        if self.upsampler is not None:
            return self.upsampler(score_maps)
        return upsample_grid_aligned(score_maps, self.heatmap_size)
