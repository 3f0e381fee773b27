"""What CLAMP costs beyond its SimpleBaseline, measured side by side in one run.

Usage::

    python scripts/benchmark.py --json benchmark.json            # the full benchmark, CPU (a few minutes)
    python scripts/benchmark.py --quick --json quick.json        # tiny models, seconds (tests/test_benchmark.py)

The GPU figures (bf16, channels_last, torch.compile, MFU, the real training command's throughput) are
scripts/gpu_check.py's, which uses this file's timing and training-step helpers.

Prints a table and writes one JSON object. Every timed figure is the median of several repetitions
after warm-up; the two models of a ratio are timed alternately (A B B A ...) in the same process, so
machine load hits both alike. Models have random weights (costs do not depend on them).

Figures (goals in brackets; the JSON's ``goals`` says which are met):

* ``infer_ratio``: CLAMP RN50 / SimpleBaseline RN50 (CLIP) eval latency, batch 8, 256 px, the text
  embeddings cached as at test time; ``infer_flop_ratio`` the FLOP ratio of those two forwards
  (FlopCounterMode, everything that runs); ``infer_time_per_flop`` = time ratio / FLOP ratio: does
  CLAMP's extra work run as fast as the rest [<= 1.05]. (The FLOP ratio itself, ~1.12, is the method's:
  a time ratio below it cannot be a goal.)
* ``train_ratio``: the same for one full training step (forward, the three losses of Eq. 10 for CLAMP
  and L_pred for SimpleBaseline, backward, AdamW on the trainer's parameter groups), with
  ``train_flop_ratio`` and ``train_time_per_flop`` [<= 1.05].
* ``train_conv_efficiency``: the CLAMP step's FLOP/s / the FLOP/s of forward + backward of the
  convolution the step runs most (a 3x3 convolution of RN50's third stage at the step's batch),
  timed between the steps so that both see the same machine load [>= 0.8];
  ``train_flop_efficiency`` the same against a large dense fp32 matmul (the machine's ceiling).
* ``pipeline_ms_per_sample``: CPU milliseconds (process time, one thread: per core) of one training
  sample through the real ``TopDownDataset`` (read, decode, crop, paper augmentation, targets, tensors)
  of 1024-px JPEGs, per input pipeline (:data:`PIPELINES`: ``exact``; ``reduced``:
  ``data.reduced_decode``; ``reduced_uint8``: also ``data.uint8_images``; ``cached`` and
  ``cached_uint8``: ``data.decoded_cache``, read after an untimed first pass has filled it), the goal
  on the fastest [<= 2.5 ms];
  ``pipeline_overhead``: the exact sample / the bare JPEG decode (PIL, into a numpy array) [<= 1.5];
  ``loader_samples_per_s``: a 2-worker ``DataLoader`` over that dataset.
* ``load_slowdown``: one epoch of the demo recipe (shortened) alone / beside one CPU-bound process per
  core, in samples/s (``train/samples_per_s``): a shared node is our users' normal case [<= 3: fair
  sharing of the cores alone costs 2x].
* ``eval_seconds_10k``: OKS evaluation of 10,000 instances laid out as AP-10K (54 species, one per
  image, 1.5 animals per image), the metric's post-processing (rescoring, OKS-NMS, COCO results) plus
  ``evaluate_keypoints`` [<= 5 s]; also at 1k and 100k, which must grow linearly (``eval_linearity``:
  seconds per instance at the largest size / at the smallest).
* ``train_peak_rss_gb``: peak resident memory of a fresh process running CLAMP RN50 training steps at
  batch 32 on the CPU.
* ``backbones``: per architecture (paper backbones and the open_clip ones beyond the paper) params,
  GFLOPs (scripts/complexity.py conventions) and batch-1 CLAMP eval latency.

The JSON also records the repetitions, the versions, the device and the thread counts. Beside wall
time it records the process CPU seconds of the same calls (``cpu_ratio``, ``*_cpu`` figures): on a
machine shared with other jobs wall time swings with their load, CPU time much less.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from clamp.models import create_model

SCHEMA_VERSION = 1
GOALS = {  # figure: (comparison, goal)
    "infer_time_per_flop": ("<=", 1.05),
    "train_time_per_flop": ("<=", 1.05),
    "train_conv_efficiency": (">=", 0.8),
    "pipeline_ms_per_sample": ("<=", 2.5),
    "pipeline_overhead": ("<=", 1.5),
    "load_slowdown": ("<=", 3.0),
    "eval_seconds_10k": ("<=", 5.0),
    "eval_linearity": ("<=", 1.5),
}

_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
_TINY_HEADS = {"heatmap_size": 16, "deconv_channels": 32, "spatial_deconv_channels": 32, "decoder_width": 64}

#: label -> create_model kwargs of the per-backbone table.
FULL_BACKBONES: dict[str, dict[str, Any]] = {
    "RN50 (paper)": {"name": "clamp_rn50"},
    "ViT-B-16 (paper)": {"name": "clamp_vitb16"},
    "ViT-L-14 (paper)": {"name": "clamp_vitl14"},
    "RN101": {"name": "clamp", "backbone": "RN101"},
    "RN50x4": {"name": "clamp", "backbone": "RN50x4"},
    "ViT-B-32": {"name": "clamp", "backbone": "ViT-B-32"},
    "ViT-L-14-336": {"name": "clamp", "backbone": "ViT-L-14-336"},
    "convnext_base": {"name": "clamp", "backbone": "convnext_base"},
    "EVA02-B-16": {"name": "clamp", "backbone": "EVA02-B-16"},
}
QUICK_BACKBONES: dict[str, dict[str, Any]] = {
    "tiny-rn": {"name": "clamp_tiny_rn"},
    "tiny convnext": {
        "name": "clamp",
        "backbone": "convnext_base",
        "input_size": 64,
        **_TINY_HEADS,
        "backbone_overrides": {
            "embed_dim": 64,
            "text_cfg": _TINY_TEXT,
            "vision_cfg": {"timm_model_name": "convnext_atto"},
        },
    },
}
PAPER_BACKBONES = ("clamp_rn50", "clamp_vitb16", "clamp_vitl14")
#: The input pipelines the benchmark and the GPU check compare: name -> the ``data.*`` switches it sets
#: (``decoded_cache``: a fresh cache folder per pipeline, filled by the untimed first pass).
PIPELINES: dict[str, dict[str, bool]] = {
    "exact": {},
    "reduced": {"reduced_decode": True},
    "reduced_uint8": {"reduced_decode": True, "uint8_images": True},
    "cached": {"decoded_cache": True},
    "cached_uint8": {"decoded_cache": True, "uint8_images": True},
}


def pipeline_dataset(
    data,
    codec,
    name: str,
    cache_root: Path,
    input_size: tuple[int, int],
    center_jitter_prob: float = 0.3,
    **augmentation: Any,
):
    """The training :class:`~clamp.data.dataset.TopDownDataset` of pipeline ``name`` (:data:`PIPELINES`)."""
    from clamp.data.dataset import TopDownDataset
    from clamp.data.decoded_cache import DecodedImageCache
    from clamp.data.transforms import TopDownTransform

    switches = PIPELINES[name]
    transform = TopDownTransform(
        data.spec,
        input_size=input_size,
        training=True,
        uint8_output=switches.get("uint8_images", False),
        **augmentation,
    )
    cache = DecodedImageCache(cache_root / name) if switches.get("decoded_cache") else None
    return TopDownDataset(
        data,
        transform,
        codec,
        seed=0,
        center_jitter_prob=center_jitter_prob,
        reduced_decode=switches.get("reduced_decode", False),
        decoded_cache=cache,
    )


def pipeline_overrides(name: str, cache_root: Path) -> list[str]:
    """Pipeline ``name``'s switches as ``python -m clamp.train`` overrides."""
    return [
        f"data.decoded_cache={cache_root / name}" if key == "decoded_cache" else f"data.{key}=true"
        for key in PIPELINES[name]
    ]


#: Sizes of each section; ``--quick`` runs tiny models and small sets so that a test can run it.
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "pair": ("clamp_rn50", "simplebaseline_rn50"),
        "batch": 8,
        "infer_reps": 7,
        "infer_warmup": 2,
        "train_reps": 5,
        "train_warmup": 1,
        "matmul_n": 2048,
        "matmul_repeat": 12,
        "conv_channels": 256,
        "load_batches": 30,
        "load_competitors": None,  # one per core
        "load_overrides": [],
        "pipeline_image_size": 1024,
        "pipeline_images": 12,
        "pipeline_reps": 3,
        "loader_workers": 2,
        "loader_batch": 8,
        "loader_epochs": 3,
        "eval_sizes": (1000, 10000, 100000),
        "eval_reps": (3, 2, 1),
        "rss_batch": 32,
        "rss_steps": 1,
        "backbones": FULL_BACKBONES,
        "backbone_reps": 2,
    },
    "quick": {
        "pair": ("clamp_tiny_rn", "simplebaseline_tiny_rn"),
        "batch": 2,
        "infer_reps": 3,
        "infer_warmup": 2,
        "train_reps": 3,
        "train_warmup": 1,
        "matmul_n": 256,
        "matmul_repeat": 4,
        "conv_channels": 16,
        "load_batches": 2,
        "load_competitors": 1,
        "load_overrides": ["data.generate.num_train=16", "data.generate.num_val=4", "data.generate.num_test=4"],
        "pipeline_image_size": 256,
        "pipeline_images": 2,
        "pipeline_reps": 2,
        "loader_workers": 2,
        "loader_batch": 2,
        "loader_epochs": 1,
        "eval_sizes": (100, 400),
        "eval_reps": (2, 1),
        "rss_batch": 4,
        "rss_steps": 1,
        "backbones": QUICK_BACKBONES,
        "backbone_reps": 2,
    },
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _complexity():
    """scripts/complexity.py (Table 7 conventions), loaded from beside this file."""
    spec = importlib.util.spec_from_file_location("clamp_complexity", Path(__file__).with_name("complexity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- timing -------------------------------------------------------------------------------------
def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_side_by_side(
    fns: dict[str, Callable[[], Any]],
    reps: int,
    warmup: int,
    device: torch.device | None = None,
    cpu_times: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each callable per repetition, after ``warmup`` untimed calls each; the order
    alternates every repetition (A B, B A, ...) so that drifting machine load hits all alike.

    ``cpu_times``, when given, receives the process CPU seconds (all threads) of the same calls: on a
    machine shared with other jobs they move much less than wall time when the job is descheduled.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    if cpu_times is not None:
        cpu_times.update(cpu)
    return times


def _summary(seconds: list[float], cpu_seconds: list[float] | None = None) -> dict[str, Any]:
    out = {"seconds": seconds, "median_s": statistics.median(seconds), "min_s": min(seconds)}
    if cpu_seconds is not None:
        out.update(cpu_seconds=cpu_seconds, cpu_median_s=statistics.median(cpu_seconds))
    return out


# ---- models and steps ---------------------------------------------------------------------------
def training_batch(model, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Images and the targets the data pipeline gives (HeatmapCodec) for random in-crop keypoints."""
    from clamp.codec import HeatmapCodec

    rng = np.random.default_rng(seed)
    codec = HeatmapCodec.for_model(model)
    w, h = model.input_size
    k = model.num_keypoints
    samples = []
    for _ in range(batch_size):
        kpts = np.concatenate([rng.uniform(0, [w - 1, h - 1], size=(k, 2)), np.full((k, 1), 2.0)], axis=1)
        targets = codec.encode(kpts.astype(np.float32))
        samples.append(
            {
                "keypoints": torch.from_numpy(kpts.astype(np.float32)),
                **{name: torch.from_numpy(t) for name, t in targets.items()},
            }
        )
    batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
    batch["image"] = torch.from_numpy(rng.standard_normal((batch_size, 3, h, w), dtype=np.float32))
    return batch


def make_train_step(
    model, batch: dict[str, torch.Tensor], network: Callable | None = None, bf16: bool = False
) -> tuple[Callable[[], float], Callable[[], None]]:
    """(one full training step, its forward + backward only) as the trainer runs them: Eq. 10 for CLAMP
    (L_pred for SimpleBaseline), backward, AdamW on the trainer's parameter groups, zero_grad.

    ``network`` runs the forward instead of ``model`` (its ``torch.compile``d form); ``bf16`` runs the
    forward and the losses under bf16 autocast on the batch's device."""
    from clamp.lightning.optim import parameter_groups
    from clamp.losses import clamp_total_loss

    is_clamp = getattr(model, "logit_scale", None) is not None
    optimizer = torch.optim.AdamW(parameter_groups(model, 5e-4, 1e-4, 1.0), lr=5e-4)
    forward = network or model
    device_type = batch["image"].device.type

    def loss() -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            out = forward(batch["image"])
            return clamp_total_loss(
                out,
                batch,
                alpha_spatial=0.4,
                alpha_feature=5e-4,
                use_spatial=is_clamp,
                use_feature=is_clamp,
                logit_scale=model.logit_scale if is_clamp else None,
            )["loss"]

    def forward_backward() -> None:
        loss().backward()
        optimizer.zero_grad(set_to_none=True)

    def step() -> float:
        value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(value.detach())

    return step, forward_backward


def counted_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (FlopCounterMode: 2 per multiply-add; matmuls, convolutions, attention)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused kernel has no FLOP formula
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def ratio_section(settings: dict[str, Any]) -> dict[str, Any]:
    """Eval latency and training step of CLAMP vs SimpleBaseline, side by side, and their FLOPs."""
    clamp_name, baseline_name = settings["pair"]
    torch.manual_seed(0)
    models = {"clamp": create_model(clamp_name), "simplebaseline": create_model(baseline_name)}
    batch = training_batch(models["clamp"], settings["batch"])
    images = batch["image"]

    for model in models.values():
        model.eval()

    def eval_forward(model):
        def run():
            with torch.no_grad():
                return model(images).heatmaps

        return run

    log(f"inference: {clamp_name} vs {baseline_name}, batch {settings['batch']}")
    infer_fns = {name: eval_forward(model) for name, model in models.items()}
    infer_cpu: dict[str, list[float]] = {}
    infer_times = timed_side_by_side(infer_fns, settings["infer_reps"], settings["infer_warmup"], cpu_times=infer_cpu)
    infer_flops = {name: counted_flops(fn) for name, fn in infer_fns.items()}

    log("training steps, with a dense matmul block timed between them")
    steps, fwd_bwd = {}, {}
    for name, model in models.items():
        model.train()
        steps[name], fwd_bwd[name] = make_train_step(model, batch)
    n, repeat = settings["matmul_n"], settings["matmul_repeat"]
    a, b = torch.randn(n, n), torch.randn(n, n)

    def matmul_block() -> None:
        for _ in range(repeat):
            torch.mm(a, b)

    # The convolution the step runs most: 3x3 of RN50's third stage (256 channels, 1/16 of the input),
    # forward and both backward products, at the step's batch.
    side = models["clamp"].input_size[0] // 16
    conv = torch.nn.Conv2d(settings["conv_channels"], settings["conv_channels"], 3, padding=1, bias=False)
    conv_input = torch.randn(settings["batch"], settings["conv_channels"], side, side, requires_grad=True)

    def conv_block() -> None:
        conv(conv_input).sum().backward()

    train_cpu: dict[str, list[float]] = {}
    train_times = timed_side_by_side(
        {**steps, "matmul": matmul_block, "conv": conv_block},
        settings["train_reps"],
        settings["train_warmup"],
        cpu_times=train_cpu,
    )
    train_flops = {name: counted_flops(fn) for name, fn in fwd_bwd.items()}
    conv_flops = counted_flops(conv_block)
    conv_time, conv_cpu = train_times.pop("conv"), train_cpu.pop("conv")
    conv_flops_per_s = conv_flops / statistics.median(conv_time)
    matmul, matmul_cpu = train_times.pop("matmul"), train_cpu.pop("matmul")
    matmul_flops = 2 * n**3 * repeat
    matmul_flops_per_s = matmul_flops / statistics.median(matmul)
    matmul_flops_per_cpu_s = matmul_flops / statistics.median(matmul_cpu)

    def figures(times, cpu, flops):
        out = {name: {**_summary(times[name], cpu[name]), "flops": flops[name]} for name in models}
        out["ratio"] = out["clamp"]["median_s"] / out["simplebaseline"]["median_s"]
        out["cpu_ratio"] = out["clamp"]["cpu_median_s"] / out["simplebaseline"]["cpu_median_s"]
        out["pair_ratios"] = [c / s for c, s in zip(times["clamp"], times["simplebaseline"], strict=True)]
        out["flop_ratio"] = flops["clamp"] / flops["simplebaseline"]
        return out

    infer, train = figures(infer_times, infer_cpu, infer_flops), figures(train_times, train_cpu, train_flops)
    clamp_flops_per_s = train_flops["clamp"] / train["clamp"]["median_s"]
    return {
        "models": {"clamp": clamp_name, "simplebaseline": baseline_name},
        "batch": settings["batch"],
        "input_size": list(models["clamp"].input_size),
        "infer": infer,
        "train": train,
        "matmul": {
            "n": n,
            "repeat": repeat,
            **_summary(matmul, matmul_cpu),
            "flops_per_s": matmul_flops_per_s,
            "flops_per_cpu_s": matmul_flops_per_cpu_s,
        },
        "conv": {
            "shape": list(conv_input.shape),
            **_summary(conv_time, conv_cpu),
            "flops": conv_flops,
            "flops_per_s": conv_flops_per_s,
        },
        "train_flops_per_s": {name: train_flops[name] / train[name]["median_s"] for name in models},
        "train_flop_efficiency": clamp_flops_per_s / matmul_flops_per_s,
        "train_conv_efficiency": clamp_flops_per_s / conv_flops_per_s,
        # The same from CPU seconds: FLOPs per CPU-second of the step / of the matmul (load-robust).
        "train_flop_efficiency_cpu": (train_flops["clamp"] / train["clamp"]["cpu_median_s"]) / matmul_flops_per_cpu_s,
    }


# ---- data pipeline ------------------------------------------------------------------------------
def pipeline_section(settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The real training-sample path on synthetic AP-10K JPEGs at ``pipeline_image_size`` px vs decoding them."""
    from PIL import Image
    from torch.utils.data import DataLoader

    from clamp.codec import HeatmapCodec
    from clamp.data.coco import load_coco_keypoints
    from clamp.data.dataset import EpochSampler, TopDownDataset, collate_samples, worker_init_fn
    from clamp.synthetic.datasets import annotation_path, generate_synthetic

    size = settings["pipeline_image_size"]
    root = generate_synthetic(
        workdir / "synthetic", seed=0, num_train=settings["pipeline_images"], num_val=1, num_test=1, image_size=size
    )
    data = load_coco_keypoints(annotation_path(root, "train"), "ap10k", root / "data")
    codec = HeatmapCodec((256, 256), (64, 64), 2.0, (8, 8))  # CLAMP RN50: input, heatmap, feature grid

    # The paper's augmentation (the data config's defaults)
    augmentation = dict(flip_prob=0.5, half_body_prob=0.3, scale_factor=0.5, rotation_factor=40, rotation_prob=0.6)
    pipelines = {
        name: pipeline_dataset(data, codec, name, workdir / "decoded", (256, 256), **augmentation) for name in PIPELINES
    }
    dataset = pipelines["exact"]
    paths = [data.image_path(inst.image_id) for inst in data.instances]

    def decode_all() -> None:  # the bare decode: an RGB JPEG into a numpy array, nothing else
        for path in paths:
            with Image.open(path) as image:
                np.asarray(image)

    def decode_at(factor: int) -> Callable[[], None]:  # OpenCV's libjpeg-turbo at 1/factor (DCT scaling)
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}.get(
            factor, cv2.IMREAD_REDUCED_COLOR_8
        )

        def run() -> None:
            for path in paths:
                cv2.imdecode(np.fromfile(path, dtype=np.uint8), flag)

        return run

    def samples_of(ds: TopDownDataset) -> Callable[[], None]:
        epochs = itertools.count()

        def run() -> None:
            epoch = next(epochs)  # every pass draws new augmentations, as epochs do
            for i in range(len(ds)):
                ds[(epoch, i)]

        return run

    log(f"data pipeline: {len(dataset)} samples from {settings['pipeline_images']} {size}-px JPEGs, one thread")
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)  # per core: process time is one core's time
    cv2.setNumThreads(0)
    try:
        cpu: dict[str, list[float]] = {}
        fns = {name: samples_of(ds) for name, ds in pipelines.items()}
        decodes = {f"decode_1/{factor}": decode_at(factor) for factor in (1, 2, 4, 8)}
        times = timed_side_by_side(
            {**fns, "decode": decode_all, **decodes}, settings["pipeline_reps"], 1, cpu_times=cpu
        )
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
    per_sample = {name: [t / len(dataset) for t in ts] for name, ts in times.items()}
    per_sample_cpu = {name: [t / len(dataset) for t in ts] for name, ts in cpu.items()}
    per_sample["sample"], per_sample_cpu["sample"] = per_sample["exact"], per_sample_cpu["exact"]

    workers = settings["loader_workers"]
    sampler = EpochSampler(len(dataset), shuffle=True, seed=0)
    loader = DataLoader(
        dataset,
        batch_size=settings["loader_batch"],
        sampler=sampler,
        collate_fn=collate_samples,
        num_workers=workers,
        persistent_workers=True,
        worker_init_fn=worker_init_fn,
    )
    epoch_rates = []
    for epoch in range(settings["loader_epochs"] + 1):  # epoch 0 starts the workers: not timed
        sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch["image"])
        if epoch:
            epoch_rates.append(count / (time.perf_counter() - start))
    del loader
    ms = {name: statistics.median(per_sample_cpu[name]) * 1e3 for name in PIPELINES}
    return {
        "image_size": size,
        "images": settings["pipeline_images"],
        "samples": len(dataset),
        "sample_s": _summary(per_sample["sample"], per_sample_cpu["sample"]),
        "decode_s": _summary(per_sample["decode"], per_sample_cpu["decode"]),
        "pipelines": {name: {"cpu_ms_per_sample": ms[name], **_summary(per_sample[name])} for name in PIPELINES},
        # The floor of DCT scaling: entropy decoding reads the whole file at every scale.
        "decode_cpu_ms_by_scale": {
            name.split("_", 1)[1]: statistics.median(per_sample_cpu[name]) * 1e3
            for name in per_sample_cpu
            if "/" in name
        },
        # What the cache holds, once filled: raw pixels, per image (and the JPEGs it replaces).
        "decoded_cache_mb_per_image": _folder_mb(workdir / "decoded" / "cached") / len(data.images),
        "jpeg_mb_per_image": sum(p.stat().st_size for p in set(paths)) / 1e6 / len(data.images),
        "fastest": min(ms, key=ms.get),
        "ms_per_sample": min(ms.values()),
        "overhead": statistics.median(per_sample_cpu["sample"]) / statistics.median(per_sample_cpu["decode"]),
        "loader": {
            "workers": workers,
            "batch": settings["loader_batch"],
            "samples_per_s_per_epoch": epoch_rates,
            "samples_per_s": statistics.median(epoch_rates),
        },
    }


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


# ---- evaluation -------------------------------------------------------------------------------
def synthetic_predictions(n: int, seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A COCO keypoint GT of ``n`` instances laid out as AP-10K (its 54 species in 23 families, one species
    per image, 1-3 animals per image: 1.5 on average) and noisy predictions in the metric's state layout."""
    from clamp.keypoints import AP10K_CATEGORIES, get_keypoint_spec

    spec = get_keypoint_spec("ap10k")
    k = spec.num_keypoints
    rng = np.random.default_rng(seed)
    per_image = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    image_id = np.repeat(np.arange(1, n + 1), per_image)[:n]
    species = np.array([c.id for c in AP10K_CATEGORIES])
    category_id = rng.choice(species, size=image_id[-1])[image_id - 1]
    wh = rng.uniform(80, 400, size=(n, 2))
    xy = rng.uniform(0, 600, size=(n, 2))
    points = xy[:, None] + rng.uniform(0, 1, size=(n, k, 2)) * wh[:, None]
    visible = rng.random((n, k)) < 0.8
    gt_kpts = np.concatenate([points * visible[..., None], 2.0 * visible[..., None]], axis=-1).round()
    annotations = [
        {
            "id": i + 1,
            "image_id": int(image_id[i]),
            "category_id": int(category_id[i]),
            "bbox": [float(xy[i, 0]), float(xy[i, 1]), float(wh[i, 0]), float(wh[i, 1])],
            "area": float(wh[i, 0] * wh[i, 1]),
            "iscrowd": 0,
            "num_keypoints": int(visible[i].sum()),
            "keypoints": gt_kpts[i].reshape(-1).tolist(),
        }
        for i in range(n)
    ]
    gt = {
        "images": [{"id": int(i), "width": 1000, "height": 1000, "file_name": f"{i}.jpg"} for i in np.unique(image_id)],
        "annotations": annotations,
        "categories": [
            {
                "id": c.id,
                "name": c.name,
                "supercategory": c.family,
                "keypoints": list(spec.keypoint_names),
                "skeleton": [],
            }
            for c in AP10K_CATEGORIES
        ],
    }
    noise = rng.normal(0, 1, size=(n, k, 2)) * 0.05 * np.sqrt(wh.prod(axis=1))[:, None, None]
    scores = rng.uniform(0.1, 1.0, size=(n, k, 1))
    states = {
        "keypoints": np.concatenate([points + noise, scores], axis=-1).astype(np.float32),
        "image_id": image_id,
        "category_id": category_id,
        "instance_id": np.arange(n) + 1,
        "area": (1.25**2 * wh.prod(axis=1)).astype(np.float32),
        "score": np.ones(n, dtype=np.float32),
    }
    return gt, states


def eval_section(settings: dict[str, Any]) -> dict[str, Any]:
    """The metric's post-processing and OKS evaluation at each size (seconds, per instance)."""
    from clamp.evaluation.metric import KeypointAPMetric
    from clamp.evaluation.oks import evaluate_keypoints

    out: dict[str, Any] = {}
    for n, reps in zip(settings["eval_sizes"], settings["eval_reps"], strict=True):
        gt, states = synthetic_predictions(n)
        metric = KeypointAPMetric("ap10k", gt)
        for name, value in states.items():
            getattr(metric, name).append(torch.from_numpy(np.asarray(value)))
        post, coco, total, ap = [], [], [], None
        log(f"OKS evaluation of {n} instances")
        for _ in range(reps):
            gc.collect()
            start = time.perf_counter()
            results = metric.coco_results()  # rescoring, OKS-NMS, COCO results: what compute() runs first
            mid = time.perf_counter()
            ap = evaluate_keypoints(gt, results, metric.keypoint_spec.sigmas)["AP"]
            end = time.perf_counter()
            post.append(mid - start)
            coco.append(end - mid)
            total.append(end - start)
        out[str(n)] = {
            "instances": n,
            "postprocess_s": _summary(post),
            "evaluate_s": _summary(coco),
            "total_s": _summary(total),
            "s_per_1k": statistics.median(total) / n * 1000,
            "AP": ap,
        }
    sizes = [str(n) for n in settings["eval_sizes"]]
    out["linearity"] = out[sizes[-1]]["s_per_1k"] / out[sizes[0]]["s_per_1k"]
    return out


# ---- memory -----------------------------------------------------------------------------------
def rss_child(name: str, batch_size: int, steps: int) -> dict[str, float]:
    """Build ``name``, run ``steps`` training steps at ``batch_size``; this process's peak RSS (GB)."""
    torch.manual_seed(0)
    model = create_model(name).train()
    batch = training_batch(model, batch_size)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    step, _ = make_train_step(model, batch)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {
        "after_build_gb": built / 2**20,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "step_s": (time.perf_counter() - start) / steps,
    }


def memory_section(settings: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of a fresh process that builds CLAMP and runs training steps at ``rss_batch`` (this script,
    run again with ``--rss-child``, so that nothing measured before counts)."""
    import clamp

    name = settings["pair"][0]
    log(f"peak memory: {name} training at batch {settings['rss_batch']} in a fresh process")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(clamp.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", name, str(settings["rss_batch"]), str(settings["rss_steps"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if child.returncode:
        raise RuntimeError(f"the memory child failed ({child.returncode}): {child.stderr[-2000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return {"model": name, "batch": settings["rss_batch"], "steps": settings["rss_steps"], **result}


# ---- a shared machine ---------------------------------------------------------------------------
def _demo_epoch_samples_per_s(workdir: Path, settings: dict[str, Any], name: str) -> float:
    """``train/samples_per_s`` of one shortened epoch of the demo recipe (a real ``python -m clamp.train``)."""
    run = workdir / name
    command = [
        sys.executable,
        "-m",
        "clamp.train",
        "+experiment=demo",
        f"data.generate.out={workdir / 'demo-data'}",
        "+data.generate.workers=2",
        *settings["load_overrides"],
        "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={settings['load_batches']}",
        "test_after_fit=false",
        "logger=csv",
        "callbacks.rich_progress_bar=false",
        f"hydra.run.dir={run}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return epoch_samples_per_s(run)[-1]


def epoch_samples_per_s(run_dir: Path) -> list[float]:
    """``train/samples_per_s`` of each epoch of a training run, from its CSV logger's ``metrics.csv``."""
    import csv

    rates = []
    for path in sorted(run_dir.glob("csv/*/metrics.csv")):
        with open(path) as file:
            rates += [
                float(row["train/samples_per_s"]) for row in csv.DictReader(file) if row.get("train/samples_per_s")
            ]
    return rates


def load_section(settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The demo's epoch alone and beside one CPU-bound process per core (another job on a shared node)."""
    log("shared machine: the demo epoch alone (data generated first, not timed)")
    _demo_epoch_samples_per_s(workdir, settings, "warm-up")  # draws the data set, imports into the page cache
    alone = _demo_epoch_samples_per_s(workdir, settings, "alone")
    count = settings["load_competitors"] or os.cpu_count() or 1
    log(f"shared machine: the demo epoch beside {count} CPU-bound processes")
    competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        loaded = _demo_epoch_samples_per_s(workdir, settings, "loaded")
    finally:
        for process in competitors:
            process.kill()
            process.wait()
    return {
        "batches": settings["load_batches"],
        "workers": 2,
        "competitors": count,
        "alone_samples_per_s": alone,
        "loaded_samples_per_s": loaded,
        "slowdown": alone / loaded,
    }


# ---- per-backbone table -----------------------------------------------------------------------
def backbone_section(settings: dict[str, Any]) -> list[dict[str, Any]]:
    complexity = _complexity()
    rows = []
    for label, kwargs in settings["backbones"].items():
        kwargs = dict(kwargs)
        name = kwargs.pop("name")
        log(f"backbone table: {label}")
        start = time.perf_counter()
        torch.manual_seed(0)
        model = create_model(name, **kwargs)
        build_s = time.perf_counter() - start
        counts = complexity.count_parameters(model)
        gflops = complexity.inference_gflops(model, model.input_size)
        image = torch.randn(1, 3, *model.input_size[::-1])

        def run(model=model, image=image):
            with torch.no_grad():
                model(image)

        latency = timed_side_by_side({"run": run}, settings["backbone_reps"], 1)["run"]
        rows.append(
            {
                "label": label,
                "model": model.config["name"],
                "backbone": kwargs.get("backbone", name),
                "encoder": type(model.image_encoder).__name__,
                "input_size": list(model.input_size),
                "params_m": (counts["params_total"] - counts["params_text_encoder"]) / 1e6,
                "params_text_m": counts["params_text_encoder"] / 1e6,
                "gflops": gflops["gflops"],
                "gflops_all": gflops["gflops_all"],
                "latency_ms": _summary([t * 1000 for t in latency]),
                "build_s": build_s,
            }
        )
        del model
        gc.collect()
    return rows


# ---- report -----------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    import open_clip
    import timm

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }
    for package in ("pycocotools", "PIL", "cv2", "lightning"):
        with contextlib.suppress(Exception):
            module = __import__(package)
            versions[package] = getattr(module, "__version__", "?")
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "versions": versions,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def goals(report: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, (op, goal) in GOALS.items():
        value = report.get(key)
        if value is None:
            continue
        met = value <= goal if op == "<=" else value >= goal
        out[key] = {"value": value, "goal": f"{op} {goal}", "met": bool(met)}
    return out


def format_report(report: dict[str, Any]) -> str:
    r, lines = report, []
    env = r["environment"]
    lines.append(
        f"CLAMP benchmark ({'quick' if r['quick'] else 'full'}) on {env['device']} ({env['cpu']}, "
        f"{env['torch_threads']} torch threads), torch {env['versions']['torch']}"
    )
    if "ratios" in r:
        q = r["ratios"]
        c, s = q["models"]["clamp"], q["models"]["simplebaseline"]
        lines += [
            "",
            f"{c} vs {s}, batch {q['batch']}, {q['input_size'][0]} px (median of the repetitions)",
            f"{'':<22}{'CLAMP':>10}{'SimpleB.':>10}{'ratio':>8}{'FLOP ratio':>12}",
        ]
        for key, label in (("infer", "eval latency (s)"), ("train", "train step (s)")):
            x = q[key]
            lines.append(
                f"{label:<22}{x['clamp']['median_s']:>10.3f}{x['simplebaseline']['median_s']:>10.3f}"
                f"{x['ratio']:>8.3f}{x['flop_ratio']:>12.3f}"
            )
        lines.append(
            f"{'GFLOP per step':<22}{q['train']['clamp']['flops'] / 1e9:>10.1f}"
            f"{q['train']['simplebaseline']['flops'] / 1e9:>10.1f}   (2 per multiply-add, fwd+bwd)"
        )
        lines.append(
            f"train GFLOP/s: CLAMP {q['train_flops_per_s']['clamp'] / 1e9:.1f}, conv {q['conv']['shape']} 3x3 "
            f"fwd+bwd {q['conv']['flops_per_s'] / 1e9:.1f} -> efficiency {q['train_conv_efficiency']:.2f}; "
            f"matmul {q['matmul']['n']}^2 {q['matmul']['flops_per_s'] / 1e9:.1f} -> {q['train_flop_efficiency']:.2f}"
        )
        lines.append(
            f"time ratio / FLOP ratio: eval {q['infer']['ratio'] / q['infer']['flop_ratio']:.3f}, "
            f"train {q['train']['ratio'] / q['train']['flop_ratio']:.3f}"
        )
        lines.append(
            f"from CPU seconds (load-robust): eval ratio {q['infer']['cpu_ratio']:.3f}, train ratio "
            f"{q['train']['cpu_ratio']:.3f}, FLOP efficiency {q['train_flop_efficiency_cpu']:.2f}"
        )
    if "pipeline" in r:
        p = r["pipeline"]
        lines += [
            "",
            f"data: {p['samples']} samples of {p['images']} {p['image_size']}-px JPEGs, CPU ms per sample on one "
            "core: " + ", ".join(f"{name} {row['cpu_ms_per_sample']:.2f}" for name, row in p["pipelines"].items()),
            f"bare decode {p['decode_s']['cpu_median_s'] * 1e3:.2f} ms -> exact overhead {p['overhead']:.2f}; "
            "OpenCV decode at "
            + ", ".join(f"{scale} {value:.2f}" for scale, value in p["decode_cpu_ms_by_scale"].items())
            + " ms; "
            f"{p['loader']['workers']}-worker loader (exact) {p['loader']['samples_per_s']:.1f} samples/s",
            f"decoded cache {p['decoded_cache_mb_per_image']:.2f} MB per image (the JPEGs: "
            f"{p['jpeg_mb_per_image']:.2f} MB)",
        ]
    if "eval" in r:
        e = r["eval"]
        lines += ["", f"{'OKS evaluation':<16}{'total s':>9}{'post s':>9}{'cocoeval s':>11}{'s / 1k':>8}"]
        for key, x in e.items():
            if key != "linearity":
                lines.append(
                    f"{x['instances']:<16}{x['total_s']['median_s']:>9.2f}{x['postprocess_s']['median_s']:>9.2f}"
                    f"{x['evaluate_s']['median_s']:>11.2f}{x['s_per_1k']:>8.3f}"
                )
        lines.append(f"linearity (s per instance, largest / smallest size): {e['linearity']:.2f}")
    if "memory" in r:
        m = r["memory"]
        lines += [
            "",
            f"peak RSS, {m['model']} training at batch {m['batch']}: {m['peak_gb']:.2f} GB "
            f"(after building: {m['after_build_gb']:.2f} GB)",
        ]
    if r.get("load"):
        lo = r["load"]
        lines += [
            "",
            f"demo epoch ({lo['batches']} batches, {lo['workers']} workers) alone {lo['alone_samples_per_s']:.1f} "
            f"samples/s, beside {lo['competitors']} CPU-bound processes {lo['loaded_samples_per_s']:.1f} "
            f"-> slowdown {lo['slowdown']:.2f}",
        ]
    if r.get("backbones"):
        lines += [
            "",
            f"{'backbone':<18}{'encoder':<19}{'input':>6}{'params M':>9}{'text M':>7}{'GFLOPs':>8}"
            f"{'GF(all)':>8}{'ms (b=1)':>9}",
        ]
        for x in r["backbones"]:
            lines.append(
                f"{x['label']:<18}{x['encoder']:<19}{x['input_size'][0]:>6}{x['params_m']:>9.1f}"
                f"{x['params_text_m']:>7.1f}{x['gflops']:>8.2f}{x['gflops_all']:>8.2f}"
                f"{x['latency_ms']['median_s']:>9.0f}"
            )
    if r["goals"]:
        lines += [
            "",
            "goals: "
            + ", ".join(
                f"{k} {v['value']:.3g} ({v['goal']}: {'met' if v['met'] else 'NOT met'})" for k, v in r["goals"].items()
            ),
        ]
    return "\n".join(lines)


SECTIONS = ("ratios", "pipeline", "eval", "memory", "load", "backbones")


def run(quick: bool, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    settings = SETTINGS["quick" if quick else "full"]
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "quick": quick,
        "environment": environment(torch.device("cpu")),
        "settings": {k: v for k, v in settings.items() if k != "backbones"},
    }
    section_s: dict[str, float] = {}
    start = time.perf_counter()

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        begin = time.perf_counter()
        result = fn()
        section_s[name] = time.perf_counter() - begin
        gc.collect()
        return result

    if "ratios" in sections:
        report["ratios"] = q = timed("ratios", lambda: ratio_section(settings))
        report.update(
            infer_ratio=q["infer"]["ratio"],
            infer_flop_ratio=q["infer"]["flop_ratio"],
            train_ratio=q["train"]["ratio"],
            train_flop_ratio=q["train"]["flop_ratio"],
            train_flop_efficiency=q["train_flop_efficiency"],
            train_conv_efficiency=q["train_conv_efficiency"],
            infer_time_per_flop=q["infer"]["ratio"] / q["infer"]["flop_ratio"],
            train_time_per_flop=q["train"]["ratio"] / q["train"]["flop_ratio"],
            infer_cpu_ratio=q["infer"]["cpu_ratio"],
            train_cpu_ratio=q["train"]["cpu_ratio"],
            train_flop_efficiency_cpu=q["train_flop_efficiency_cpu"],
        )
    if "pipeline" in sections:
        with tempfile.TemporaryDirectory(prefix="clamp-benchmark-") as workdir:
            report["pipeline"] = p = timed("pipeline", lambda: pipeline_section(settings, Path(workdir)))
        report.update(
            pipeline_overhead=p["overhead"],
            pipeline_ms_per_sample=p["ms_per_sample"],
            loader_samples_per_s=p["loader"]["samples_per_s"],
        )
    if "eval" in sections:
        report["eval"] = e = timed("eval", lambda: eval_section(settings))
        ten_k = e.get("10000")
        report["eval_seconds_10k"] = ten_k["total_s"]["median_s"] if ten_k else None
        report["eval_linearity"] = e["linearity"]
    if "memory" in sections:
        report["memory"] = timed("memory", lambda: memory_section(settings))
        report["train_peak_rss_gb"] = report["memory"]["peak_gb"]
    if "load" in sections:
        with tempfile.TemporaryDirectory(prefix="clamp-benchmark-load-") as workdir:
            report["load"] = lo = timed("load", lambda: load_section(settings, Path(workdir)))
        report["load_slowdown"] = lo["slowdown"]
    if "backbones" in sections:
        report["backbones"] = timed("backbones", lambda: backbone_section(settings))
    report = {k: v for k, v in report.items() if v is not None}
    report["goals"] = goals(report)
    report["section_s"] = section_s
    report["wall_s"] = time.perf_counter() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT.json", help="write the report here as one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny models and small sets (seconds)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these")
    parser.add_argument("--rss-child", nargs=3, metavar=("MODEL", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        name, batch, steps = args.rss_child
        print(json.dumps(rss_child(name, int(batch), int(steps))))
        return 0
    report = run(args.quick, tuple(args.sections))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=_json_default))
        log(f"wrote {args.json}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
