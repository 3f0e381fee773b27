"""Image encoders: dense CLIP ResNet / ViT (F_origin plus the projector to the joint space) and ImageNet R-50.

Each encoder maps images (B, 3, H, W) to :class:`ImageFeatures`:

* ``features`` = F_origin, the backbone's last feature map (B, C_feat, h, w) that the keypoint head fuses
  with the score map (paper Eq. 9);
* ``dense`` = F, the projector applied at every position (B, C_emb, h, w), in CLIP's joint text-image
  space (paper Sec. 3.2.2);
* ``global_embedding`` (B, C_emb), the projector's global token (memory token 0 of the context decoder).

All encoders expose ``feature_channels``, ``embed_dim`` (None without a projector) and ``stride`` (input
pixels per feature cell); inputs must be multiples of ``stride`` so that the grid maps back exactly.

The CLIP encoders reuse the submodules of an open_clip ``CLIP.visual`` (weights included), so weights
loaded by :func:`clamp.models.clip_backbone.load_open_clip` are used unchanged. Four families:
open_clip's ModifiedResNet (:class:`DenseCLIPResNet`) and VisionTransformer (:class:`DenseCLIPViT`), and
timm trunks wrapped by open_clip's ``TimmModel``: EVA / timm ViT (:class:`DenseTimmViT`) and ConvNeXt
(:class:`DenseTimmConvNeXt`). Each takes F_origin from the last stage, applies the tower's own
joint-space projection at every position, returns the tower's own pooled embedding as the global one,
and derives ``stride`` from the tower.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from timm.layers import drop_path
from torch import Tensor, nn

from clamp.models.hub import network_reachable, offline_mode
from clamp.models.weight_files import PretrainedWeightsError, read_state_dict, resize_grid_embedding

logger = logging.getLogger(__name__)

__all__ = [
    "ImageFeatures",
    "DenseCLIPResNet",
    "DenseCLIPViT",
    "DenseTimmConvNeXt",
    "DenseTimmViT",
    "DropPathHook",
    "ImageNetResNet50",
    "build_clip_image_encoder",
]


@dataclass
class ImageFeatures:
    """Outputs of an image encoder (see module docstring)."""

    features: Tensor
    dense: Tensor | None
    global_embedding: Tensor | None


def _check_input(images: Tensor, stride: int, name: str) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} expects images of shape (B, 3, H, W), got {got}")
    height, width = images.shape[-2:]
    if height % stride or width % stride:
        raise ValueError(f"{name}: input size {width}x{height} must be a multiple of the stride {stride}")


class DenseCLIPResNet(nn.Module):
    """CLIP ModifiedResNet with its attention pool applied densely as the projector (official Sec. 1.1).

    The stem and layer1-4 give F_origin (2048 x 8 x 8 for RN50 at 256 px). The projector is CLIP's
    ``AttentionPool2d`` over all positions: tokens [mean of positions; the h*w positions] plus the
    positional table (resized bilinearly to the actual grid when it differs), then one full multi-head
    self-attention with CLIP's q/k/v/c_proj over all 1 + h*w tokens. Output token 0 is the global
    embedding (identical to CLIP's pooled image feature); tokens 1.. form the dense map.
    """

    def __init__(self, visual: ModifiedResNet) -> None:
        """Wrap ``visual`` (shares its modules and weights)."""
        super().__init__()
        if not isinstance(visual, ModifiedResNet) or visual.attnpool is None:
            raise TypeError(
                f"DenseCLIPResNet needs an open_clip ModifiedResNet with attnpool, got {type(visual).__name__}"
            )
        self.visual = visual
        self.feature_channels = visual.attnpool.k_proj.in_features
        self.embed_dim = visual.attnpool.c_proj.out_features
        self.stride = 32

    def forward(self, images: Tensor, project: bool = True) -> ImageFeatures:
        """Images (B, 3, H, W) -> F_origin (B, 2048, H/32, W/32), and with ``project`` dense F and the
        global embedding (SimpleBaseline skips the projector)."""
        _check_input(images, self.stride, type(self).__name__)
        visual = self.visual
        x = visual.stem(images)
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
        if not project:
            return ImageFeatures(features=x, dense=None, global_embedding=None)
        global_embedding, dense = self.project(x)
        return ImageFeatures(features=x, dense=dense, global_embedding=global_embedding)

    def projector_parameters(self) -> list[nn.Parameter]:
        """Parameters used only by :meth:`project` (CLIP's attention pool)."""
        return list(self.visual.attnpool.parameters())

    def project(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """The projector F_origin -> (global (B, C_emb), dense F (B, C_emb, h, w)) (paper Sec. 3.2.2)."""
        pool = self.visual.attnpool
        batch, _, height, width = features.shape
        tokens = features.flatten(2).permute(2, 0, 1)  # (hw, B, C)
        tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)
        positions = resize_grid_embedding(pool.positional_embedding, (height, width))
        tokens = tokens + positions[:, None].to(tokens.dtype)
        out, _ = F.multi_head_attention_forward(
            query=tokens,
            key=tokens,
            value=tokens,
            embed_dim_to_check=tokens.shape[-1],
            num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight,
            k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True,
            training=self.training,
            need_weights=False,
        )  # (1 + hw, B, C_emb)
        dense = out[1:].permute(1, 2, 0).reshape(batch, -1, height, width)
        return out[0], dense


class DropPathHook:
    """Stochastic depth (Huang et al., 2016) as a forward hook on a residual branch's last module
    (open_clip's ``ls_1`` / ``ls_2``): in training, timm's ``drop_path`` zeroes the branch per sample
    with probability ``rate`` and scales the kept ones by 1 / (1 - rate); identity in eval. A hook leaves
    the module tree, and so the state dict, unchanged."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        return drop_path(output, self.rate, module.training)


class DenseCLIPViT(nn.Module):
    """CLIP VisionTransformer returning patch features and their joint-space projection (official Sec. 1.2).

    Patch tokens at the input size, the positional table interpolated (bilinear) to the grid when it
    differs, the class embedding added once (the official code adds it twice, a DenseCLIP quirk; adding it
    once keeps the pretrained CLIP computation), ln_pre, the transformer blocks. F_origin = the last
    block's patch tokens before ln_post, (B, width, h, w). Projector = ln_post then ``proj`` on all
    tokens: the class token gives the global embedding (identical to ``CLIP.encode_image``), the patch
    tokens the dense map.

    ``drop_path_rate`` > 0 trains with stochastic depth as the official ViT configs (0.4 there): block i
    of n drops its attention and its MLP branch, each with its own per-sample draw, with probability
    ``drop_path_rate * i / (n - 1)`` (0 for the first block, rising linearly). It runs as forward hooks
    on open_clip's ``ls_1`` / ``ls_2``, so the modules, the weights and their names stay open_clip's.
    """

    def __init__(self, visual: VisionTransformer, drop_path_rate: float = 0.0) -> None:
        """Wrap ``visual`` (shares its modules and weights); needs class-token pooling and a projection."""
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if not isinstance(visual, VisionTransformer):
            raise TypeError(f"DenseCLIPViT needs an open_clip VisionTransformer, got {type(visual).__name__}")
        problems = []
        if visual.attn_pool is not None:
            problems.append("attentional_pool")
        if visual.pool_type != "tok":
            problems.append(f"pool_type={visual.pool_type!r} (need 'tok')")
        if visual.proj is None:
            problems.append("no proj")
        if not isinstance(visual.patch_dropout, nn.Identity):
            problems.append("patch_dropout > 0 (drops grid cells)")
        if not getattr(visual.transformer, "batch_first", True):
            problems.append("batch_first=False (the blocks run here on (B, L, C) tokens)")
        if problems:
            raise ValueError(f"DenseCLIPViT cannot use this VisionTransformer: {', '.join(problems)}")
        patch_h, patch_w = visual.patch_size
        if patch_h != patch_w:
            raise ValueError(f"DenseCLIPViT needs square patches, got {visual.patch_size}")
        self.visual = visual
        self.feature_channels = visual.conv1.out_channels
        self.embed_dim = visual.proj.shape[1]
        self.stride = patch_h
        self.drop_path_rates = self._add_drop_path(drop_path_rate) if drop_path_rate > 0 else []

    def _add_drop_path(self, rate: float) -> list[float]:
        """Hook stochastic depth onto every block's two residual branches; returns the per-block rates."""
        transformer = self.visual.transformer
        blocks = list(transformer.resblocks)
        rates = torch.linspace(0.0, rate, len(blocks)).tolist()
        for block, block_rate in zip(blocks, rates, strict=True):
            for branch in ("ls_1", "ls_2"):
                if not hasattr(block, branch):
                    raise ValueError(f"drop_path_rate needs open_clip blocks with {branch}, not {type(block).__name__}")
                getattr(block, branch).register_forward_hook(DropPathHook(block_rate))
        return rates

    def forward(self, images: Tensor, project: bool = True) -> ImageFeatures:
        """Images (B, 3, H, W) -> F_origin (B, width, H/p, W/p), and with ``project`` dense F and the
        global embedding (SimpleBaseline skips the projector)."""
        _check_input(images, self.stride, type(self).__name__)
        visual = self.visual
        x = visual.conv1(images)  # (B, width, h, w)
        batch, width, height, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(batch, 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + resize_grid_embedding(visual.positional_embedding, (height, grid_w)).to(x.dtype)
        x = visual.transformer(visual.ln_pre(x))
        features = x[:, 1:].transpose(1, 2).reshape(batch, width, height, grid_w)
        if not project:
            return ImageFeatures(features=features, dense=None, global_embedding=None)
        global_embedding, dense = self.project(x, (height, grid_w))
        return ImageFeatures(features=features, dense=dense, global_embedding=global_embedding)

    def projector_parameters(self) -> list[nn.Parameter]:
        """Parameters used only by :meth:`project` (``ln_post`` and ``proj``)."""
        return [*self.visual.ln_post.parameters(), self.visual.proj]

    def project(self, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """The projector: ln_post + proj on all (B, 1 + h*w, width) tokens (paper Sec. 3.2.2)."""
        out = self.visual.ln_post(tokens) @ self.visual.proj
        dense = out[:, 1:].transpose(1, 2).reshape(out.shape[0], -1, *grid)
        return out[:, 0], dense


def _projected_width(visual: nn.Module, last: nn.Module | None) -> int:
    """Width of a timm tower's joint-space output: open_clip's head, else the trunk's last ``Linear``."""
    head = visual.head
    if hasattr(head, "proj"):
        return head.proj.out_features
    if hasattr(head, "mlp"):
        return head.mlp.fc2.out_features
    if isinstance(last, nn.Linear):
        return last.out_features
    return int(visual.trunk.num_features)


class DenseTimmViT(nn.Module):
    """A timm ViT trunk (EVA / EVA02, timm ``VisionTransformer``) of an open_clip ``TimmModel``, made dense.

    The trunk runs at the model's input size (its position table resized at build, RoPE grids included).
    F_origin = the last block's patch tokens before the final norm, (B, width, h, w), as for the CLIP ViT.
    Projector = what the trunk and open_clip put after the blocks, applied to every token: ``norm``, then
    per patch token ``fc_norm`` and the classifier ``head`` (EVA02-CLIP's projection to the joint space) and
    open_clip's ``head`` (a ``linear`` / ``mlp`` projection, when the config has one). The global
    embedding is the tower's own pooled output (class token or the patch average): identical to
    ``CLIP.encode_image``.
    """

    def __init__(self, visual: nn.Module) -> None:
        """Wrap ``visual`` (an open_clip ``TimmModel`` with a ViT trunk; shares its modules and weights)."""
        super().__init__()
        from timm.models.eva import Eva
        from timm.models.vision_transformer import VisionTransformer

        trunk = getattr(visual, "trunk", None)
        if not isinstance(trunk, (Eva, VisionTransformer)):
            raise TypeError(f"DenseTimmViT needs a timm EVA or VisionTransformer trunk, got {type(trunk).__name__}")
        problems = []
        if getattr(trunk, "attn_pool", None) is not None or trunk.global_pool not in ("token", "avg"):
            problems.append(f"global_pool={trunk.global_pool!r} (need 'token' or 'avg')")
        if getattr(trunk, "dynamic_img_size", False):
            problems.append("dynamic_img_size")
        if "pool" in dict(visual.head.named_children()):
            problems.append("an open_clip attention pool")
        patch_h, patch_w = trunk.patch_embed.patch_size
        if patch_h != patch_w:
            problems.append(f"non-square patches {trunk.patch_embed.patch_size}")
        if problems:
            raise ValueError(f"DenseTimmViT cannot use this {type(trunk).__name__}: {', '.join(problems)}")
        self.visual = visual
        self.feature_channels = int(trunk.num_features)
        self.embed_dim = _projected_width(visual, trunk.head)
        self.stride = int(trunk.feature_info[-1]["reduction"])
        self.num_prefix_tokens = int(trunk.num_prefix_tokens)

    def forward(self, images: Tensor, project: bool = True) -> ImageFeatures:
        """Images (B, 3, H, W) -> F_origin (B, width, H/p, W/p), and with ``project`` dense F and the
        global embedding (SimpleBaseline skips the projector)."""
        _check_input(images, self.stride, type(self).__name__)
        trunk = self.visual.trunk
        if not project:
            (features,) = trunk.forward_intermediates(
                images, indices=1, norm=False, output_fmt="NCHW", intermediates_only=True
            )
            return ImageFeatures(features=features, dense=None, global_embedding=None)
        tokens, (features,) = trunk.forward_intermediates(images, indices=1, norm=False, output_fmt="NCHW")
        global_embedding, dense = self.project(tokens, tuple(features.shape[-2:]))
        return ImageFeatures(features=features, dense=dense, global_embedding=global_embedding)

    def projector_parameters(self) -> list[nn.Parameter]:
        """Parameters used only by :meth:`project` (final norm, fc_norm, heads)."""
        trunk = self.visual.trunk
        return [p for module in (trunk.norm, trunk.fc_norm, trunk.head, self.visual.head) for p in module.parameters()]

    def project(self, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """The projector on the normed (B, prefix + h*w, width) tokens -> (global (B, C), dense (B, C, h, w))."""
        trunk, head = self.visual.trunk, self.visual.head
        global_embedding = head(trunk.forward_head(tokens))
        patches = tokens[:, self.num_prefix_tokens :]
        dense = head(trunk.head(trunk.head_drop(trunk.fc_norm(patches))))
        return global_embedding, dense.transpose(1, 2).reshape(dense.shape[0], -1, *grid)


class DenseTimmConvNeXt(nn.Module):
    """A timm ConvNeXt trunk of an open_clip ``TimmModel``, made dense.

    F_origin = the last stage's feature map (B, C, H/32, W/32). Projector = the trunk's head without its
    pooling (LayerNorm over channels, the optional pre-logits MLP) and open_clip's projection, applied at
    every position; the global embedding is the tower's own pooled output (average pool, norm,
    projection), identical to ``CLIP.encode_image``.
    """

    def __init__(self, visual: nn.Module) -> None:
        """Wrap ``visual`` (an open_clip ``TimmModel`` with a ConvNeXt trunk; shares its modules and weights)."""
        super().__init__()
        from timm.layers import NormMlpClassifierHead
        from timm.models.convnext import ConvNeXt

        trunk = getattr(visual, "trunk", None)
        if not isinstance(trunk, ConvNeXt) or not isinstance(trunk.head, NormMlpClassifierHead):
            raise TypeError(
                f"DenseTimmConvNeXt needs a timm ConvNeXt trunk with its norm head, got {type(trunk).__name__}"
            )
        if "pool" in dict(visual.head.named_children()):
            raise ValueError("DenseTimmConvNeXt cannot use an open_clip attention pool")
        self.visual = visual
        self.feature_channels = int(trunk.num_features)
        self.embed_dim = _projected_width(visual, trunk.head.fc)
        self.stride = int(trunk.feature_info[-1]["reduction"])

    def forward(self, images: Tensor, project: bool = True) -> ImageFeatures:
        """Images (B, 3, H, W) -> F_origin (B, C, H/32, W/32), and with ``project`` dense F and the global
        embedding (SimpleBaseline skips the projector)."""
        _check_input(images, self.stride, type(self).__name__)
        trunk = self.visual.trunk
        features = trunk.stages(trunk.stem(images))
        if not project:
            return ImageFeatures(features=features, dense=None, global_embedding=None)
        global_embedding, dense = self.project(features)
        return ImageFeatures(features=features, dense=dense, global_embedding=global_embedding)

    def projector_parameters(self) -> list[nn.Parameter]:
        """Parameters used only by :meth:`project` (norm_pre, the trunk's head, open_clip's head)."""
        trunk = self.visual.trunk
        return [p for module in (trunk.norm_pre, trunk.head, self.visual.head) for p in module.parameters()]

    def project(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """F_origin -> (global (B, C_emb), dense F (B, C_emb, h, w)): the head at every position."""
        trunk, head = self.visual.trunk, self.visual.head
        x = trunk.norm_pre(features)
        global_embedding = head(trunk.forward_head(x))
        cls = trunk.head
        dense = head(cls.fc(cls.drop(cls.pre_logits(cls.norm(x).permute(0, 2, 3, 1)))))
        return global_embedding, dense.permute(0, 3, 1, 2)


def build_clip_image_encoder(clip_model: nn.Module, drop_path_rate: float = 0.0) -> nn.Module:
    """The dense encoder for ``clip_model.visual``: ModifiedResNet -> :class:`DenseCLIPResNet`, ViT ->
    :class:`DenseCLIPViT`, timm EVA / ViT trunk -> :class:`DenseTimmViT`, timm ConvNeXt ->
    :class:`DenseTimmConvNeXt`. ``drop_path_rate`` (stochastic depth) applies to the CLIP ViT."""
    from open_clip.timm_model import TimmModel

    visual = getattr(clip_model, "visual", None)
    if isinstance(visual, VisionTransformer):
        return DenseCLIPViT(visual, drop_path_rate=drop_path_rate)
    if drop_path_rate:
        raise TypeError(
            f"drop_path_rate applies to CLIP ViT backbones, not {type(visual).__name__} (timm towers: "
            "backbone_overrides={'vision_cfg': {'timm_drop_path': RATE}})"
        )
    if isinstance(visual, ModifiedResNet):
        return DenseCLIPResNet(visual)
    if isinstance(visual, TimmModel):
        from timm.models.convnext import ConvNeXt

        return DenseTimmConvNeXt(visual) if isinstance(visual.trunk, ConvNeXt) else DenseTimmViT(visual)
    raise TypeError(
        f"no dense encoder for a CLIP vision tower of type {type(visual).__name__}; "
        "supported: open_clip ModifiedResNet, VisionTransformer and timm EVA / ViT / ConvNeXt trunks"
    )


class ImageNetResNet50(nn.Module):
    """torchvision ResNet-50 trunk (conv1 .. layer4, no pooling/fc) for the ImageNet SimpleBaseline.

    ``weights``: ``None`` (random), ``"imagenet"`` (torchvision ``IMAGENET1K_V1``, from the torch hub cache
    or downloaded when the host answers) or a local state-dict file (torchvision layout; ``fc.*`` ignored).
    ``tiny=True`` builds the same kind of trunk with one basic block per stage (random weights only), the
    stand-in of the ImageNet row in offline smoke runs.
    """

    _TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, weights: str | os.PathLike | None = None, tiny: bool = False) -> None:
        """Build the trunk and load ``weights`` (see class doc)."""
        super().__init__()
        import torchvision

        if tiny and weights is not None:
            raise PretrainedWeightsError(
                "the tiny ImageNet-style ResNet is a random-weight test model; use weights=null"
            )
        # Weights first: a missing file fails before the (slow) random init.
        state_dict = None if weights is None else _imagenet_resnet50_state_dict(weights)
        resnet = (
            torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
            if tiny
            else torchvision.models.resnet50(weights=None)
        )
        if state_dict is not None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
            missing, unexpected = resnet.load_state_dict(state_dict, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise PretrainedWeightsError(
                    f"ResNet-50 weights {weights}: {len(missing)} missing keys {missing[:5]}, "
                    f"{len(unexpected)} unexpected keys {unexpected[:5]} (expected torchvision's layout)"
                )
        for name in self._TRUNK:
            self.add_module(name, getattr(resnet, name))
        self.feature_channels = resnet.fc.in_features
        self.embed_dim = None
        self.stride = 32

    def forward(self, images: Tensor, project: bool = False) -> ImageFeatures:
        """Images (B, 3, H, W) -> layer4 features (B, C, H/32, W/32); there is no projector."""
        _check_input(images, self.stride, type(self).__name__)
        x = images
        for name in self._TRUNK:
            x = getattr(self, name)(x)
        return ImageFeatures(features=x, dense=None, global_embedding=None)

    def projector_parameters(self) -> list[nn.Parameter]:
        """None: an ImageNet trunk has no joint-space projector."""
        return []


def _imagenet_resnet50_state_dict(weights: str | os.PathLike) -> dict[str, Tensor]:
    """torchvision's ImageNet ResNet-50 weights for the tag ``"imagenet"``, or a local file's."""
    if str(weights) != "imagenet":
        return read_state_dict(weights)
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached.is_file():
        return read_state_dict(cached)
    offline = offline_mode()
    if not offline and network_reachable(url):
        try:
            return ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # any download failure gets the same how-to message
            reason = f"download failed: {exc}"
    else:
        reason = "HF_HUB_OFFLINE is set" if offline else "download.pytorch.org cannot be reached"
    raise PretrainedWeightsError(
        f"ImageNet ResNet-50 weights are not cached and cannot be downloaded ({reason}). Download {url} on a "
        f"connected machine and either put it at {cached} (torch hub cache; TORCH_HOME moves it) or pass its "
        "path as the weights; or use weights=null for random init."
    )
