"""The prepared GPU check: what the project's GPU path does on one accelerator, in one short run.

Usage (``scripts/gpu_check.sh`` installs the wheels of ``make gpu-wheels`` first on a bare machine)::

    scripts/gpu_check.sh --out gpu_check/                     # one GPU, about 7 minutes
    scripts/gpu_check.sh --device cpu --quick --out DIR       # the same code on a CPU in a minute (a test)

Writes ``gpu_check.json`` (every figure) and ``gpu_check.md`` (the tables) to ``--out`` and prints
the tables. Sections, in the order they run (each is skipped, and says so, when the time budget
``--budget-s`` would not hold it):

* ``environment``: versions, the device, the project's dependency ranges (pyproject.toml) checked
  against what is installed, and the measured bf16 matmul rate (the MFU ceiling beside the nominal
  one).
* ``parity``: ``python -m clamp.eval`` and ``python -m clamp.predict`` of one checkpoint on the CPU and
  on the device: the AP and every keypoint, compared.
* ``steps``: model-only training steps (Eq. 10 for CLAMP, L_pred for SimpleBaseline, backward,
  AdamW) of the full-size CLAMP and SimpleBaseline RN50 and ViT-B/16 at the paper's per-GPU batch
  and 256 px: fp32, bf16 autocast, bf16 + channels_last; samples/s, peak memory, model FLOP
  utilisation (FlopCounterMode's FLOPs of the step / its time / the peak rate).
* ``vitl14``: the same for CLAMP ViT-L/14 at 224 px, bf16.
* ``train``: the real ``python -m clamp.train trainer=gpu`` (CLAMP RN50, bf16-mixed, channels_last) on
  synthetic AP-10K with 1024-px JPEGs for ``--train-seconds``, once per input pipeline: end-to-end
  ``train/samples_per_s`` (lightning/throughput.py) against the model-only step = how much of the
  time the device waits on data.
* ``compile``: bf16 + channels_last + ``torch.compile`` steps, last because compiling is the slowest.

Models have random weights (costs do not depend on them); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1
#: Dense bf16 rate of an H200 (SXM) as measured on such machines (an 8192^3 matmul; datasheet ~990).
NOMINAL_BF16_FLOPS = 790e12
#: (model, training modes) of the steps section; the compile section runs the same models.
STEP_MODELS = ("clamp_rn50", "simplebaseline_rn50", "clamp_vitb16", "simplebaseline_vitb16")
STEP_MODES = {  # mode: (bf16, channels_last, compile)
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16+channels_last": (True, True, False),
    "bf16+compile": (True, True, True),
}
SECTIONS = ("parity", "steps", "vitl14", "train", "compile")

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "models": STEP_MODELS,
        "batch": 32,
        "reps": 10,
        "warmup": 3,
        "vitl14": ("clamp_vitl14", {"input_size": 224}),
        "train_backbone": "rn50",
        "train_model_overrides": [],
        "train_images": 2400,
        "train_image_size": 1024,
        "train_workers": 14,
        "train_batch": 32,
        "generate_workers": 12,
        "pipeline_samples": 120,
        "parity_train": ["trainer.max_epochs=4"],
        "matmul_n": 8192,
        # seconds a section needs at least (it is skipped beyond the budget)
        "need_s": {"parity": 60, "step": 15, "vitl14": 40, "train": 60, "compile": 80},
    },
    "quick": {
        "models": ("clamp_tiny_rn", "simplebaseline_tiny_rn"),
        "batch": 2,
        "reps": 2,
        "warmup": 1,
        "vitl14": ("clamp_tiny_vit", {}),
        "train_backbone": "tiny_rn",
        "train_model_overrides": ["+model.overrides.input_size=64", "+model.overrides.heatmap_size=16"],
        "train_images": 24,
        "train_image_size": 256,
        "train_workers": 2,
        "train_batch": 4,
        "generate_workers": 2,
        "pipeline_samples": 8,
        "parity_train": [
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "data.generate.num_train=16",
            "data.generate.num_val=4",
            "data.generate.num_test=4",
            "model.overrides.input_size=64",
            "model.overrides.heatmap_size=16",
            "trainer.check_val_every_n_epoch=1",
        ],
        "matmul_n": 256,
        "need_s": {"parity": 20, "step": 2, "vitl14": 2, "train": 15, "compile": 60},
    },
}


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _benchmark():
    """scripts/benchmark.py (its timing and training-step helpers), loaded from beside this file."""
    spec = importlib.util.spec_from_file_location("clamp_benchmark", Path(__file__).with_name("benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


class Budget:
    """Seconds left of the run's budget; sections ask before they start."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- environment ------------------------------------------------------------------------------
def requirement_check() -> list[dict[str, Any]]:
    """Each dependency range of pyproject.toml against the installed version (the project's own
    ranges, checked where the code runs: e.g. the GPU machine's torch)."""
    import importlib.metadata as metadata

    import tomllib
    from packaging.requirements import Requirement

    rows = []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            installed = None
        ok = installed is not None and requirement.specifier.contains(installed, prereleases=True)
        rows.append({"requirement": line, "installed": installed, "ok": ok})
    return rows


def matmul_rate(device: torch.device, n: int) -> dict[str, Any]:
    """bf16 matmul FLOP/s on random data (median of ten after three warm-ups): the measured ceiling."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = bench.timed_side_by_side({"mm": lambda: torch.mm(a, b)}, 10, 3, device)["mm"]
    return {
        "n": n,
        "dtype": str(dtype),
        "median_s": statistics.median(times),
        "flops_per_s": 2 * n**3 / statistics.median(times),
    }


def environment_section(device: torch.device, settings: dict[str, Any]) -> dict[str, Any]:
    info = bench.environment(device)
    info["requirements"] = requirement_check()
    info["tf32"] = {
        "matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gb"] = props.total_memory / 2**30
        info["gpu_multiprocessors"] = props.multi_processor_count
        info["cuda"] = torch.version.cuda
    info["matmul"] = matmul_rate(device, settings["matmul_n"])
    return info


# ---- model-only training steps ------------------------------------------------------------------
def step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one forward + backward of the training loss (FlopCounterMode, fp32, eager)."""
    _, forward_backward = bench.make_train_step(model, batch)
    return bench.counted_flops(forward_backward)


def step_throughput(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    mode: str,
    reps: int,
    warmup: int,
) -> dict[str, Any]:
    """Samples/s and peak memory of full training steps of a copy of ``model`` in ``mode``."""
    bf16, channels_last, compiled = STEP_MODES[mode]
    model = copy.deepcopy(model).train()
    batch = dict(batch)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    if compiled:
        torch._dynamo.reset()
    step, _ = bench.make_train_step(model, batch, network=torch.compile(model) if compiled else None, bf16=bf16)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    seconds = bench.timed_side_by_side({"step": step}, reps, warmup, device)["step"]
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, step
    gc.collect()
    median = statistics.median(seconds)
    return {
        "mode": mode,
        "bf16": bf16,
        "channels_last": channels_last,
        "compile": compiled,
        "step_s": seconds,
        "median_s": median,
        "samples_per_s": batch["image"].shape[0] / median,
        "peak_memory_gb": peak,
        "wall_s_with_warmup": wall,
    }


def model_rows(
    name: str,
    kwargs: dict[str, Any],
    modes: list[str],
    device: torch.device,
    settings: dict[str, Any],
    budget: Budget,
    peak_flops: float,
    need_s: float,
) -> dict[str, Any]:
    """One model's steps in each of ``modes`` (those that fit the budget) with FLOPs and MFU."""
    from clamp.models import create_model

    torch.manual_seed(0)
    model = create_model(name, **kwargs).to(device)
    batch = {k: v.to(device) for k, v in bench.training_batch(model, settings["batch"]).items()}
    flops = step_flops(model, batch)
    out: dict[str, Any] = {
        "model": name,
        "input_size": list(model.input_size),
        "batch": settings["batch"],
        "gflop_per_sample": flops / settings["batch"] / 1e9,
        "modes": {},
        "skipped": {},
    }
    for mode in modes:
        if not budget.allows(need_s):
            out["skipped"][mode] = f"time budget ({budget.left():.0f} s left)"
            continue
        log(f"steps: {name} {mode}")
        try:
            row = step_throughput(model, batch, device, mode, settings["reps"], settings["warmup"])
        except Exception as err:  # a failing mode is a finding, not the end of the check
            out["skipped"][mode] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
            log(out["skipped"][mode])
            continue
        row["flops_per_s"] = flops * row["samples_per_s"] / settings["batch"]
        row["mfu"] = row["flops_per_s"] / peak_flops
        out["modes"][mode] = row
    del model, batch
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# ---- subprocess helpers -------------------------------------------------------------------------
def run_command(args: list[str], log_path: Path, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m ...`` (or any command) with its output in ``log_path``; exit status and seconds."""
    start = time.perf_counter()
    with open(log_path, "w") as out:
        try:
            proc = subprocess.run(
                args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env={**os.environ, **(env or {})}
            )
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
    result = {"command": " ".join(args), "exit": status, "seconds": time.perf_counter() - start}
    if status != 0:
        result["log_tail"] = log_path.read_text(errors="replace").splitlines()[-15:]
    return result


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def generate(
    out: Path,
    settings: dict[str, Any],
    image_size: int,
    num_train: int,
    num_val: int,
    num_test: int,
    dataset: str = "ap10k",
    seed: int = 0,
) -> list[str]:
    """The ``python -m clamp.synthetic`` command that writes a synthetic set into ``out``."""
    return python_module(
        "clamp.synthetic",
        *("--out", str(out), "--dataset", dataset, "--seed", str(seed)),
        *("--num-train", str(num_train), "--num-val", str(num_val), "--num-test", str(num_test)),
        *("--image-size", str(image_size), "--workers", str(settings["generate_workers"])),
    )


# ---- parity: eval and predict on the CPU and on the device ----------------------------------------
def _compare_keypoints(a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, Any]:
    """Largest coordinate and score differences of two equally ordered lists of (K, 3) poses."""
    if len(a) != len(b):
        return {"instances": [len(a), len(b)], "same_instances": False}
    if not a:
        return {"instances": 0, "max_abs_px": None}
    xy = np.abs(np.concatenate([x[:, :2] for x in a]) - np.concatenate([y[:, :2] for y in b]))
    scores = np.abs(np.concatenate([x[:, 2] for x in a]) - np.concatenate([y[:, 2] for y in b]))
    return {
        "instances": len(a),
        "keypoints": int(xy.shape[0]),
        "max_abs_px": float(xy.max()),
        "over_1e-3_px": int((xy.max(axis=1) > 1e-3).sum()),
        "max_abs_score": float(scores.max()),
    }


def train_parity_model(device: torch.device, work: Path, settings: dict[str, Any]) -> tuple[Path | None, dict]:
    """A checkpoint for the parity check: the demo recipe (tiny CLAMP, synthetic AP-10K), shortened."""
    run_dir = work / "parity_train"
    result = run_command(
        python_module(
            "clamp.train",
            "+experiment=demo",
            "trainer=gpu" if device.type == "cuda" else "trainer=cpu",
            f"data.generate.out={work / 'parity_data'}",
            f"+data.generate.workers={settings['generate_workers']}",
            f"data.num_workers={settings['train_workers']}",
            *settings["parity_train"],
            "test_after_fit=false",
            "logger=none",
            "callbacks.rich_progress_bar=false",
            f"hydra.run.dir={run_dir}",
        ),
        work / "parity_train.log",
        600,
    )
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    return (ckpt if result["exit"] == 0 and ckpt.is_file() else None), result


def parity_section(device: torch.device, ckpt: Path, work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """``python -m clamp.eval`` of ``ckpt`` on the CPU and on ``device`` (AP and every result's
    keypoints), and the Predictor on the test images with their GT boxes on both (unrounded keypoints)."""
    from clamp import Predictor
    from clamp.checkpoint import read_checkpoint

    stored = read_checkpoint(ckpt).get("datamodule_hyper_parameters") or {}
    test = stored.get("splits", {}).get("test")
    if not test:
        return {"skipped": f"{ckpt} records no data settings (not written by clamp.train)"}
    result: dict[str, Any] = {"checkpoint": str(ckpt), "commands": []}
    data_root = Path(stored["root"])
    if not (data_root / test["ann"]).is_file():
        gen = stored.get("generate")
        if not gen:
            return {"skipped": f"the data of {ckpt} is not at {data_root} and is not synthetic (cannot be redrawn)"}
        # The checkpoint's own synthetic set, drawn again (it is deterministic): its test split is scored.
        data_root = work / "parity_data"
        command = generate(
            data_root,
            settings,
            image_size=int(gen.get("image_size", 256)),
            num_train=int(gen["num_train"]),
            num_val=int(gen["num_val"]),
            num_test=int(gen.get("num_test", gen["num_val"])),
            dataset=str(gen.get("dataset", "ap10k")),
            seed=int(gen.get("seed", 0)),
        )
        result["commands"].append(run_command(command, work / "parity_generate.log", 300))
        if result["commands"][-1]["exit"] != 0:
            return result
    result["data_root"] = str(data_root)

    devices = {"cpu": "cpu", "device": "gpu" if device.type == "cuda" else "cpu"}
    evaluated: dict[str, dict[str, Any]] = {}
    for name, accelerator in devices.items():
        if name == "device" and device.type == "cpu":  # the same run twice: the CPU's results stand for both
            evaluated["device"] = evaluated.get("cpu", {})
            continue
        folder = work / f"parity_eval_{name}"
        run = run_command(
            python_module(
                "clamp.eval",
                *(f"ckpt={ckpt}", f"data.root={data_root}", f"trainer.accelerator={accelerator}"),
                f"hydra.run.dir={folder}",
            ),
            work / f"parity_eval_{name}.log",
            300,
        )
        result["commands"].append(run)
        if run["exit"] == 0:
            evaluated[name] = {
                "metrics": json.loads((folder / "metrics.json").read_text()),
                "results": json.loads((folder / "results.json").read_text()),
            }
    if len(evaluated) == 2 and all(evaluated.values()):
        result["AP"] = {name: e["metrics"].get("AP") for name, e in evaluated.items()}
        result["AP_equal"] = result["AP"]["cpu"] == result["AP"]["device"]
        result["eval_keypoints"] = _compare_keypoints(
            *([np.asarray(r["keypoints"], np.float64).reshape(-1, 3) for r in e["results"]] for e in evaluated.values())
        )

    ann = json.loads((data_root / test["ann"]).read_text())
    images = ann["images"][:40]
    boxes = {im["id"]: [] for im in images}
    for a in ann["annotations"]:
        if a["image_id"] in boxes:
            boxes[a["image_id"]].append(a["bbox"])
    paths = [str(data_root / test["images"] / im["file_name"]) for im in images]
    predicted = {}
    for name, accelerator in devices.items():
        predictor = Predictor.from_checkpoint(ckpt, device="cuda" if accelerator == "gpu" else "cpu")
        animals = predictor.predict_many(paths, [boxes[im["id"]] for im in images])
        predicted[name] = [animal.keypoints.astype(np.float64) for found in animals for animal in found]
    result["predict_keypoints"] = _compare_keypoints(predicted["cpu"], predicted["device"])
    return result


# ---- the input pipelines, sample by sample on one core ---------------------------------------------
def pipeline_section(data_root: Path, settings: dict[str, Any], cache_root: Path) -> dict[str, Any]:
    """CPU milliseconds per training sample (paper augmentation, CLAMP RN50 geometry) of each input
    pipeline on this machine's cores, one thread, and each fast path's pixels against the exact ones."""
    from clamp.codec import HeatmapCodec
    from clamp.data.coco import load_coco_keypoints
    from clamp.data.transforms import normalize_uint8_images
    from clamp.synthetic.datasets import annotation_path

    torch.set_num_threads(1)
    data = load_coco_keypoints(annotation_path(data_root, "train"), "ap10k", data_root / "data")
    size = 64 if settings is SETTINGS["quick"] else 256
    codec = HeatmapCodec((size, size), (size // 4, size // 4), 2.0, (size // 32, size // 32))
    count = min(len(data.instances), settings["pipeline_samples"])
    out: dict[str, Any] = {"samples": count, "image_size": settings["train_image_size"], "pipelines": {}}
    samples = {}
    for name in bench.PIPELINES:
        dataset = bench.pipeline_dataset(data, codec, name, cache_root, (size, size))
        times = []
        for epoch in range(4):  # the first pass fills a decoded cache: not timed
            start = time.process_time()
            batch = [dataset[(epoch, i)] for i in range(count)]
            times.append((time.process_time() - start) / count)
        samples[name], times = batch, times[1:]
        out["pipelines"][name] = {"ms_per_sample": statistics.median(times) * 1e3, "reps_ms": [t * 1e3 for t in times]}
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255
    for name, batch in samples.items():
        images = [
            s["image"] if s["image"].dtype != torch.uint8 else normalize_uint8_images(s["image"][None])[0]
            for s in batch
        ]
        diff = torch.stack([(a["image"] - b).abs() * std for a, b in zip(samples["exact"], images)])
        out["pipelines"][name].update(
            pixel_mean_abs=float(diff.mean()),
            pixel_p99=float(diff.flatten()[:: max(1, diff.numel() // 2_000_000)].quantile(0.99)),
            pixel_max=float(diff.max()),
            keypoints_equal=all(torch.equal(a["keypoints"], b["keypoints"]) for a, b in zip(samples["exact"], batch)),
        )
    return out


# ---- the real training command --------------------------------------------------------------------
def train_section(
    device: torch.device,
    work: Path,
    data_root: Path,
    settings: dict[str, Any],
    seconds: float,
    pipelines: dict[str, list[str]],
    budget: Budget,
    need_s: float,
) -> dict[str, Any]:
    accelerator = ["trainer=gpu"] if device.type == "cuda" else ["trainer=cpu"]
    common = [
        *accelerator,
        f"backbone={settings['train_backbone']}",
        "model.pretrained=null",
        *settings["train_model_overrides"],
        "data=synthetic",
        f"data.root={data_root}",  # drawn beforehand; a data.root of one's own is read as it is
        f"data.num_workers={settings['train_workers']}",
        f"data.batch_size={settings['train_batch']}",
        f"speed.channels_last={str(device.type == 'cuda').lower()}",
        "trainer.max_epochs=100000",
        f"+trainer.max_time={{seconds: {int(seconds)}}}",
        "trainer.check_val_every_n_epoch=100000",
        "+trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=50",
        "test_after_fit=false",
        "logger=csv",
        "callbacks.rich_progress_bar=false",
    ]
    out: dict[str, Any] = {"seconds": seconds, "workers": settings["train_workers"], "pipelines": {}}
    for name, extra in pipelines.items():
        if not budget.allows(need_s):
            out["pipelines"][name] = {"skipped": f"time budget ({budget.left():.0f} s left)"}
            continue
        run_dir = work / f"train_{name}"
        log(f"train: python -m clamp.train ({name} pipeline) for {seconds:.0f} s")
        result = run_command(
            python_module("clamp.train", *common, *extra, f"hydra.run.dir={run_dir}"),
            work / f"train_{name}.log",
            seconds + 240,
        )
        epochs = bench.epoch_samples_per_s(run_dir)
        # The first epochs hold worker start-up and cuDNN's autotuning: the steady state is after them.
        steady = epochs[2:] if len(epochs) > 4 else epochs[1:] or epochs
        result.update(
            overrides=extra,
            epochs=len(epochs),
            epoch_samples_per_s=epochs,
            samples_per_s=statistics.median(steady) if steady else None,
        )
        out["pipelines"][name] = result
    return out


# ---- report -------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    gpu = env.get("gpu", env["device"])
    lines = [
        f"GPU check of {report['date']}: {gpu}, torch {env['versions']['torch']}"
        f"{', CUDA ' + env['cuda'] if env.get('cuda') else ''}, {env['cpu_count']} CPU cores"
        f"{' (quick: tiny models)' if report['quick'] else ''}",
        "",
    ]
    bad = [r for r in env["requirements"] if not r["ok"]]
    lines.append(
        "Dependency ranges of pyproject.toml: "
        + (
            "all satisfied"
            if not bad
            else "NOT satisfied: " + ", ".join(f"{r['requirement']} ({r['installed']})" for r in bad)
        )
    )
    mm = env["matmul"]
    lines.append(
        f"Measured {mm['dtype'].replace('torch.', '')} matmul {mm['n']}^3: {mm['flops_per_s'] / 1e12:.3g} TFLOP/s "
        f"(MFU below is against {report['peak_flops'] / 1e12:.3g} TFLOP/s)"
    )
    rows = report.get("steps", []) + ([report["vitl14"]] if report.get("vitl14") else []) + report.get("compile", [])
    if rows:
        lines += [
            "",
            "| model | input | mode | samples/s | step ms | peak GiB | GFLOP/sample | MFU |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for model in rows:
            for mode, row in model["modes"].items():
                lines.append(
                    f"| {model['model']} | {model['input_size'][0]} | {mode} | {row['samples_per_s']:.4g} | "
                    f"{row['median_s'] * 1e3:.1f} | {_fmt(row['peak_memory_gb'])} | {model['gflop_per_sample']:.1f} | "
                    f"{row['mfu']:.1%} |"
                )
            for mode, why in model["skipped"].items():
                lines.append(f"| {model['model']} | {model['input_size'][0]} | {mode} | skipped: {why} | | | | |")
    train = report.get("train")
    if train:
        lines += [
            "",
            f"Real `python -m clamp.train` ({train['workers']} workers, {train['seconds']:.0f} s each):",
            "",
            "| input pipeline | epochs | end-to-end samples/s | model-only samples/s | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in train["pipelines"].items():
            if "skipped" in row:
                lines.append(f"| {name} | skipped: {row['skipped']} | | | |")
                continue
            ratio = (
                row["samples_per_s"] / train["model_only_samples_per_s"]
                if row.get("samples_per_s") and train.get("model_only_samples_per_s")
                else None
            )
            status = "" if row["exit"] == 0 else f" (exit {row['exit']})"
            lines.append(
                f"| {name}{status} | {row['epochs']} | {_fmt(row['samples_per_s'], '.4g')} | "
                f"{_fmt(train.get('model_only_samples_per_s'), '.4g')} | {_fmt(ratio, '.2f')} |"
            )
    pipeline = report.get("pipeline")
    if pipeline:
        lines += [
            "",
            f"Input pipelines, one core ({pipeline['samples']} samples of {pipeline['image_size']}-px JPEGs, paper "
            "augmentation), pixels against the exact path (0-255):",
            "",
            "| pipeline | CPU ms / sample | mean abs | p99 | max | keypoints equal |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, row in pipeline["pipelines"].items():
            lines.append(
                f"| {name} | {row['ms_per_sample']:.2f} | {row['pixel_mean_abs']:.2f} | {row['pixel_p99']:.1f} | "
                f"{row['pixel_max']:.0f} | {row['keypoints_equal']} |"
            )
    parity = report.get("parity")
    if parity:
        lines += ["", "Evaluation and prediction, CPU vs device:"]
        if "skipped" in parity:
            lines.append(f"skipped: {parity['skipped']}")
        else:
            if "AP" in parity:
                lines.append(f"- AP {parity['AP']} (equal: {parity['AP_equal']})")
            for key in ("eval_keypoints", "predict_keypoints"):
                if key in parity:
                    lines.append(f"- {key.replace('_', ' ')}: {parity[key]}")
            failed = [c for c in parity["commands"] if c["exit"] != 0]
            for command in failed:
                lines.append(f"- FAILED (exit {command['exit']}): `{command['command']}`")
    if report.get("skipped_sections"):
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped_sections"].items())]
    lines += ["", f"Section seconds: {json.dumps({k: round(v, 1) for k, v in report['section_s'].items()})}"]
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Path | None = None) -> dict[str, Any]:
    device = torch.device(args.device)
    settings = SETTINGS["quick" if args.quick else "full"]
    need = settings["need_s"]
    budget = Budget(args.budget_s)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
        "settings": {k: v for k, v in settings.items()},
        "skipped_sections": {},
        "section_s": {},
    }
    section_s = report["section_s"]

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        """Run one section; a section that fails is recorded (with its error) and the check goes on.
        The report so far is written after every section, so a run cut short keeps what it measured."""
        begin = time.perf_counter()
        try:
            return fn()
        except Exception as err:
            report["skipped_sections"][name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
            log(f"{name}: {report['skipped_sections'][name]}")
            return None
        finally:
            section_s[name] = time.perf_counter() - begin
            if out is not None:
                (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=bench._json_default))

    # The training set is drawn in the background while the device measures the steps.
    data_root = work / "train_data"
    with open(work / "train_generate.log", "w") as generate_log:
        generator = subprocess.Popen(
            generate(data_root, settings, settings["train_image_size"], settings["train_images"], 4, 0),
            stdout=generate_log,
            stderr=subprocess.STDOUT,
        )
    report["environment"] = env = timed("environment", lambda: environment_section(device, settings))
    report["peak_flops"] = peak = (
        NOMINAL_BF16_FLOPS if device.type == "cuda" or env is None else env["matmul"]["flops_per_s"]
    )

    if "parity" in args.sections and budget.allows(need["parity"]):
        ckpt = Path(args.ckpt) if args.ckpt else None
        if ckpt is None:
            log("parity: training the demo recipe on the device for a checkpoint")
            ckpt, report["parity_training"] = timed(
                "parity_training", lambda: train_parity_model(device, work, settings)
            )
        if ckpt is None or not ckpt.is_file():
            report["skipped_sections"]["parity"] = f"no checkpoint ({ckpt})"
        else:
            log("parity: eval and predict on the CPU and the device")
            report["parity"] = timed("parity", lambda: parity_section(device, ckpt, work, settings))
    elif "parity" in args.sections:
        report["skipped_sections"]["parity"] = "time budget"

    # The train section's reference is CLAMP's bf16+channels_last row: run alone when steps are not asked.
    if "steps" in args.sections or "train" in args.sections:
        modes = [m for m in STEP_MODES if m != "bf16+compile"] if "steps" in args.sections else ["bf16+channels_last"]
        names = settings["models"] if "steps" in args.sections else settings["models"][:1]
        report["steps"] = timed(
            "steps",
            lambda: [model_rows(n, {}, modes, device, settings, budget, peak, need["step"]) for n in names],
        )
    name, kwargs = settings["vitl14"]
    if "vitl14" not in args.sections:
        pass
    elif budget.allows(need["vitl14"]):
        report["vitl14"] = timed(
            "vitl14", lambda: model_rows(name, kwargs, ["bf16+channels_last"], device, settings, budget, peak, 0)
        )
    else:
        report["skipped_sections"]["vitl14"] = "time budget"

    if "train" not in args.sections:
        generator.kill()
    elif generator.wait() != 0:
        report["skipped_sections"]["train"] = f"generating the training set failed (see {work}/train_generate.log)"
    else:
        report["pipeline"] = timed("pipeline", lambda: pipeline_section(data_root, settings, work / "decoded"))
        pipelines = {name: bench.pipeline_overrides(name, work / "decoded_train") for name in args.pipelines}
        report["train"] = train = timed(
            "train",
            lambda: train_section(
                device, work, data_root, settings, args.train_seconds, pipelines, budget, need["train"]
            ),
        )
        if train is not None:
            reference = report["steps"][0] if report.get("steps") else None
            row = reference["modes"].get("bf16+channels_last") if reference else None
            train["model_only_samples_per_s"] = row["samples_per_s"] if row else None
            train["model_only_mode"] = f"{reference['model']} bf16+channels_last" if reference else None

    if "compile" not in args.sections:
        pass
    elif device.type == "cuda" or args.compile:
        report["compile"] = timed(
            "compile",
            lambda: [
                model_rows(n, {}, ["bf16+compile"], device, settings, budget, peak, need["compile"])
                for n in settings["models"]
            ],
        )
    else:
        report["skipped_sections"]["compile"] = "on the CPU only with --compile (slow to compile)"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and sets (the CPU test)")
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--work", default=None, help="scratch folder (default: OUT/work)")
    parser.add_argument("--ckpt", default=None, help="parity checkpoint (default: train the demo recipe briefly)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip sections that would end later")
    parser.add_argument("--train-seconds", type=float, default=75.0, help="length of each real training run")
    parser.add_argument(
        "--pipelines",
        nargs="+",
        default=["exact", "reduced_uint8", "cached_uint8"],  # the reference and each fast path's best, in the budget
        choices=list(bench.PIPELINES),
        help="the train section's input pipelines (the pipeline section measures them all)",
    )
    parser.add_argument("--compile", action="store_true", help="also the compile section on a CPU")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=SECTIONS,
        help="run only these (steps: the "
        "model-only rows; without it only CLAMP's bf16+channels_last row runs, the train section's reference)",
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (use --device cpu --quick for the CPU check)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.work = args.work or str(out / "work")
    start = time.perf_counter()
    report = run(args, out)
    report["wall_s"] = time.perf_counter() - start
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=bench._json_default))
    markdown = format_markdown(report)
    (out / "gpu_check.md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
