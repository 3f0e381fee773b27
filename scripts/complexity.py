"""Parameters and GFLOPs of the full-size models, beside the paper's Table 7 (complexity comparison).

Usage::

    python scripts/complexity.py            # table with the paper's numbers and relative differences
    python scripts/complexity.py --json     # JSON list: model, params_total, params_trainable, gflops, ...
    python scripts/complexity.py --models clamp_rn50 simplebaseline_rn50
    python scripts/complexity.py --backbones RN101 EVA02-B-16   # beyond the paper: CLAMP and SimpleBaseline
                                                                # on any supported open_clip architecture
    python scripts/complexity.py --models --backbones all       # only the BACKBONES rows

Every model is built with ``clamp.models.create_model(name, pretrained=None)`` (random weights; the
counts do not depend on them) at its registered input size: 256x256, ViT-L/14 224x224.

Conventions (those of the paper, which used mmcv's ``get_flops``):

* **Parameters** exclude the frozen CLIP text encoder, reported separately (``params_text_encoder``;
  ``params_total`` includes it, ``params_trainable`` does not): CLAMP RN50 is 68 M in the paper, 19 M
  above its SimpleBaseline, while the text tower alone has 64 M (RN50, ViT-B) / 124 M (ViT-L).
  Everything else is counted, including parameters used only in training (the score-map upsampler of
  the spatial loss) or not at all (the CLIP attention pool of the RN50 SimpleBaseline), as
  ``model.parameters()`` and the paper do.
* **GFLOPs** are of one inference forward (one image, ``eval()``, no auxiliary outputs) with the text
  embeddings cached, as the paper says ("the prompt embeddings ... can be stored offline"), so the text
  encoder costs nothing: the model runs once to fill the cache and is counted on a second forward.
  ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add; all numbers here are
  divided by 2 so that one multiply-add is one FLOP, as in mmcv/mmpose and the paper.
  Two counts are given:

  - ``gflops_all``: everything that runs: every matmul, convolution and attention product
    (nn.MultiheadAttention's fused inference kernel is switched off while counting, since
    FlopCounterMode has no formula for it and would count 0).
  - ``gflops``: what mmcv's ``get_flops`` counts, which is what Table 7 reports. mmcv adds up the
    FLOPs of layers of known exact types (Conv, ConvTranspose, Linear, BatchNorm/LayerNorm, ReLU,
    pooling, Upsample) when they are *called as modules*. It therefore misses all attention computed
    functionally: nn.MultiheadAttention's q/k/v/out projections and attention products (every CLIP ViT
    block, the prompt encoder), CLIP's RN50 attention pool (``F.multi_head_attention_forward``), the
    ViT's final ``@ proj``, the context decoder's attention products, and CLIP's LayerNorm subclass.
    It is emulated from FlopCounterMode's per-module counts plus forward hooks for the norm, activation
    and pooling layers, with mmcv's per-layer rules.

Measured (``python scripts/complexity.py``, random weights, CPU) against Table 7:

  =============================  =========  ===========  ===================  =======  ==================
  model                          params M   text enc. M  GFLOPs (paper)       GF(all)  params (paper)
  =============================  =========  ===========  ===================  =======  ==================
  simplebaseline_rn50       48.8       -            8.96 (9.0, -0.4 %)   8.91     48.8 (49, -0.3 %)
  simplebaseline_rn50_imagenet   34.0       -            7.28 (9.0, -19 %)    7.24     34.0 (49, -31 %)
  clamp_rn50                     67.6       63.7         9.21 (9.2, +0.1 %)   10.18    67.6 (68, -0.5 %)
  simplebaseline_vitb16          90.4       -            16.60 (16.6, 0.0 %)  23.88    90.4 (91, -0.6 %)
  clamp_vitb16                   97.2       63.4         16.84 (16.8, +0.3 %) 24.24    97.2 (98, -0.8 %)
  simplebaseline_vitl14 @224     309.2      -            54.06 (-)            79.93    -
  clamp_vitl14 @224              320.1      123.6        54.37 (-)            80.48    -
  =============================  =========  ===========  ===================  =======  ==================

Differences from Table 7, explained:

* With the paper's conventions every Table 7 row is reproduced within 1 % (params and GFLOPs).
* The full FLOP count (``gflops_all``) is higher than Table 7 because Table 7 (mmcv) leaves attention
  out: +1.0 GFLOPs for CLAMP RN50 (CLIP's attention pool, which the dense projector runs over all 65
  tokens) and +7.3 GFLOPs for ViT-B/16 (self-attention of the 12 blocks at 257 tokens), i.e. +11 % and
  +44 %. These are real costs of the models, not differences between this implementation and the
  official one. SimpleBaselines do not run the CLIP projector, so their full count is lower.
* The paper's "SimpleBaseline ResNet-50" row is the CLIP RN50 backbone (``simplebaseline_rn50``):
  49 M / 9.0 GFLOPs match only a CLIP ModifiedResNet-50 whose 14.8 M attention-pool parameters are
  counted. That SimpleBaseline keeps the attention pool (frozen, never run), so its parameter count
  matches the paper while ``params_trainable`` is 34.0 M. The ImageNet torchvision ResNet-50
  SimpleBaseline (``simplebaseline_rn50_imagenet``, as in mmpose: 34.0 M, 5.46 GFLOPs at 256x192) has
  no attention pool and a single 7x7 stem convolution instead of CLIP's three 3x3 ones, hence
  -31 % / -19 %.
* The CLAMP - SimpleBaseline gap (paper +19 M / +0.2 GFLOPs for RN50, +7 M / +0.2 for ViT-B) is the
  prompt encoder (one transformer layer at the joint width: 12.6 M for RN50, 3.2 M for ViT-B), the
  context decoder (3.9 M / 3.6 M), the score-map upsampler used only by the spatial loss (2.2 M for RN50
  with 256-channel deconvs, 10 K for ViT-B), the 8 context vectors and gamma.
* ViT-L/14 (224x224) is not in Table 7.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clamp.models import create_model

MODELS = (
    "simplebaseline_rn50",
    "simplebaseline_rn50_imagenet",
    "clamp_rn50",
    "simplebaseline_vitb16",
    "clamp_vitb16",
    "simplebaseline_vitl14",
    "clamp_vitl14",
)

#: open_clip architectures beyond the paper (``--backbones all``), built as ``create_model(kind, backbone=arch)``
#: at their family's default input (256 px; 224 px for patch 14).
BACKBONES = ("RN101", "RN50x4", "ViT-B-32", "ViT-L-14-336", "convnext_base", "EVA02-B-16")

#: Table 7 of the paper: model -> (params in M, GFLOPs) at 256x256. Its "SimpleBaseline ResNet-50" row is
#: compared with both ResNet-50 SimpleBaselines (see the docstring for why it is the CLIP one).
PAPER_TABLE7 = {
    "simplebaseline_rn50": (49.0, 9.0),
    "simplebaseline_rn50_imagenet": (49.0, 9.0),
    "clamp_rn50": (68.0, 9.2),
    "simplebaseline_vitb16": (91.0, 16.6),
    "clamp_vitb16": (98.0, 16.8),
}
PARAMS_TOLERANCE = 0.05
GFLOPS_TOLERANCE = 0.10


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen-text-encoder parameter counts (shared parameters counted once)."""
    params = {id(p): p for p in model.parameters()}.values()
    text = getattr(model, "text_encoder", None)
    return {
        "params_total": sum(p.numel() for p in params),
        "params_trainable": sum(p.numel() for p in params if p.requires_grad),
        "params_text_encoder": 0 if text is None else sum(p.numel() for p in text.parameters()),
    }


# Layers whose FLOPs mmcv's get_flops counts (exact types, and only when called as modules): a layer whose
# weights are used functionally (nn.MultiheadAttention's projections, CLIP's attention pool, ViT ``@ proj``)
# or a subclass (CLIP's LayerNorm) is not counted.
_MMCV_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_MMCV_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
_MMCV_ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
_MMCV_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _mmcv_elementwise_flops(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """mmcv's count for norm / activation / pooling / upsampling layers (0 for anything else)."""
    kind = type(module)
    if not isinstance(output, torch.Tensor):
        return 0
    if kind in _MMCV_NORMS:
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        return output.numel() * (2 if affine else 1)
    if kind in _MMCV_ACTIVATIONS or kind is nn.Upsample:
        return output.numel()
    if kind in _MMCV_POOLS:
        return inputs[0].numel()
    return 0


def inference_gflops(model: nn.Module, image_size: tuple[int, int]) -> dict[str, Any]:
    """GFLOPs (1 multiply-add = 1 FLOP) of one cached-text inference forward of one image.

    Returns ``gflops_all`` (every matmul, convolution and attention), ``gflops`` (what mmcv's get_flops,
    used by the paper, counts) and ``gflops_by_module`` (full count per top-level submodule).
    """
    width, height = image_size
    images = torch.randn(1, 3, height, width)
    model.eval()
    elementwise = [0]

    def count_elementwise(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        elementwise[0] += _mmcv_elementwise_flops(module, inputs, output)

    fastpath = torch.backends.mha.get_fastpath_enabled()
    # The fused inference kernel of nn.MultiheadAttention has no FlopCounterMode formula (it would count 0).
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            model(images)  # fills the text-embedding cache, as at test time
            counter = FlopCounterMode(display=False)
            hooks = [m.register_forward_hook(count_elementwise) for m in model.modules()]
            try:
                with counter:
                    model(images)
            finally:
                for hook in hooks:
                    hook.remove()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    # FlopCounterMode counts a multiply-add as 2 FLOPs; its module names are "<ClassName>.<qualified name>".
    counts = {name: sum(ops.values()) / 2 for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    weight_layers = sum(
        counts.get(f"{root}.{name}", 0) for name, module in model.named_modules() if type(module) in _MMCV_WEIGHT_LAYERS
    )
    return {
        "gflops": (weight_layers + elementwise[0]) / 1e9,
        "gflops_all": counter.get_total_flops() / 2e9,
        "gflops_by_module": {
            name.split(".", 1)[1]: flops / 1e9 for name, flops in counts.items() if name.count(".") == 1 and flops
        },
    }


def measure(name: str, backbone: str | None = None) -> dict[str, Any]:
    """Build ``name`` (a registered model, or a kind on ``backbone``) with random weights and measure it."""
    start = time.monotonic()
    model = create_model(name, pretrained=None, **({} if backbone is None else {"backbone": backbone}))
    counts = count_parameters(model)
    return {
        "model": name if backbone is None else f"{name}_openclip:{backbone}",
        "input_size": list(model.input_size),
        **counts,
        "params_excluding_text_encoder": counts["params_total"] - counts["params_text_encoder"],
        **inference_gflops(model, model.input_size),
        "seconds": time.monotonic() - start,
    }


def _relative(ours: float, paper: float) -> float:
    return (ours - paper) / paper


def format_table(rows: list[dict[str, Any]]) -> str:
    """A text table of the measurements beside Table 7, with relative differences and tolerance flags."""
    header = (
        f"{'model':<38} {'input':>7} {'params(M)':>9} {'text(M)':>7} {'GF(all)':>7} {'GFLOPs':>7} | "
        f"{'paperM':>6} {'dParams':>8} {'paperGF':>7} {'dGFLOPs':>9} {'dGF(all)':>8}  ok"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        params = row["params_excluding_text_encoder"] / 1e6
        size = "x".join(str(s) for s in row["input_size"])
        line = (
            f"{row['model']:<38} {size:>7} {params:>9.1f} {row['params_text_encoder'] / 1e6:>7.1f} "
            f"{row['gflops_all']:>7.2f} {row['gflops']:>7.2f} | "
        )
        paper = PAPER_TABLE7.get(row["model"])
        if paper is None:
            line += f"{'-':>6} {'-':>8} {'-':>7} {'-':>9} {'-':>8}"
        else:
            d_params, d_mmcv = _relative(params, paper[0]), _relative(row["gflops"], paper[1])
            ok = abs(d_params) <= PARAMS_TOLERANCE and abs(d_mmcv) <= GFLOPS_TOLERANCE
            line += (
                f"{paper[0]:>6.0f} {d_params:>+8.1%} {paper[1]:>7.1f} {d_mmcv:>+9.1%} "
                f"{_relative(row['gflops_all'], paper[1]):>+8.1%}  {'yes' if ok else 'NO'}"
            )
        lines.append(line)
    lines += [
        "",
        "params(M): all parameters except the frozen text encoder (text(M)). GFLOPs: one 1-image inference",
        "forward, text embeddings cached, 1 multiply-add = 1 FLOP (FlopCounterMode / 2); GFLOPs counts what",
        "mmcv's get_flops (the paper's tool) counts (no functional attention), GF(all) all compute.",
        f"ok: within {PARAMS_TOLERANCE:.0%} (params) and {GFLOPS_TOLERANCE:.0%} (GFLOPs) of Table 7. "
        "The script's docstring explains every difference.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the models and print a table (default) or JSON (``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument(
        "--models",
        nargs="*",
        default=list(MODELS),
        choices=MODELS,
        metavar="NAME",
        help=f"subset of {', '.join(MODELS)} (none: only --backbones)",
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=[],
        metavar="ARCH",
        help=f"also CLAMP and SimpleBaseline on these open_clip architectures ('all': {', '.join(BACKBONES)})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    backbones = list(BACKBONES) if args.backbones == ["all"] else args.backbones
    jobs = [(name, None) for name in args.models]
    jobs += [(kind, arch) for arch in backbones for kind in ("simplebaseline", "clamp")]
    rows = []
    for name, arch in jobs:
        rows.append(measure(name) if arch is None else measure(name, arch))
        print(f"measured {rows[-1]['model']} in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
        gc.collect()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
