"""Training on a real SLURM scheduler through the project's launcher config (``make test-slurm``).

Needs the local cluster of ``scripts/local_slurm.sh`` (``make test-slurm`` starts and stops it); skipped
with a reason otherwise. Jobs go through ``hydra/launcher=slurm`` exactly as on a real cluster, with the
resources of a CPU-only node.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch

from clamp.checkpoint import read_checkpoint
from tests.helpers import compose_train, fast_overrides, run_cli
from tests.test_slurm_cluster import _sinfo_works

pytestmark = pytest.mark.slow

# What a CPU-only node offers: no GPUs, one CPU and 2 GB per job.
CPU_NODE = (
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
)
TRAINING = ("trainer.limit_train_batches=6", "trainer.limit_val_batches=1", "trainer.max_epochs=8")


@pytest.fixture(scope="module", autouse=True)
def cluster_running():
    reason = _sinfo_works()
    if reason:
        pytest.skip(reason)


def sacct(job: str, duplicates: bool = False) -> list[list[str]]:
    """``[job id, state]`` per task of a job (with ``duplicates``, one per run of a requeued task too)."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", *(["-D"] if duplicates else []), "-j", job, "-o", "JobID,State"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line.split("|") for line in out.splitlines() if line]


def settled(job: str, timeout: float = 120) -> list[list[str]]:
    """The tasks of a job once none is pending or running (the results arrive a moment before SLURM knows)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = sacct(job)
        if tasks and all(state not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING") for _, state in tasks):
            return tasks
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job} did not settle: {tasks}")
        time.sleep(1)


def runs_of(job: str) -> int:
    """How many times SLURM ran the job (1 + its requeues)."""
    return len(sacct(job, duplicates=True))


def submitted_job(sweep: Path, timeout: float = 120) -> str:
    """The SLURM job id of a multirun's submission (from submitit's folder)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # submitit's folder per job is <id> or <id>_<task>; SLURM job ids start at 1 (anything else is
        # a file of submitit's own, read too early as a job id once).
        ids = sorted(
            {
                int(m.group(1))
                for p in (sweep / ".submitit").glob("*")
                if p.is_dir() and (m := re.fullmatch(r"(\d+)(?:_\d+)?", p.name)) and int(m.group(1)) > 0
            }
        )
        if ids:
            return str(ids[0])
        time.sleep(0.5)
    raise AssertionError(f"no job was submitted under {sweep / '.submitit'}")


def launch(tmp_path: Path, *overrides: str, wandb_mode: str = "disabled") -> subprocess.Popen:
    import os
    import sys

    from tests.helpers import OFFLINE_ENV, REPO_ROOT

    return subprocess.Popen(
        [sys.executable, "-m", "clamp.train", "-m", *CPU_NODE, *overrides],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            **OFFLINE_ENV,
            "CLAMP_ROOT": str(tmp_path),
            "WANDB_MODE": wandb_mode,
            "WANDB_SILENT": "true",
        },
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen, timeout: float = 900) -> str:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_tables_smoke_multirun_is_one_array_task_per_row_and_every_row_finishes(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_cli(
        "-m",
        "clamp.train",
        "-m",
        "+experiment=table3",
        "+debug=smoke",
        *CPU_NODE,
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
        "logger=none",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = submitted_job(sweep)
    tasks = settled(job)
    assert len(tasks) == 4 and all(state == "COMPLETED" for _, state in tasks), tasks
    assert all((sweep / str(i) / "metrics.json").is_file() for i in range(4))
    table = run_cli("-m", "clamp.tables", str(sweep))
    assert table.returncode == 0 and table.stdout.count("random weights, synthetic data") == 4


def straight_run(synthetic_root: Path, tmp_path: Path, *extra: str) -> Path:
    from clamp.train import train

    train(compose_train(fast_overrides(synthetic_root, tmp_path / "straight", *TRAINING, *extra)))
    return tmp_path / "straight" / "checkpoints" / "last.ckpt"


def job_overrides(synthetic_root: Path, sweep: Path, *extra: str) -> list[str]:
    return [
        o for o in fast_overrides(synthetic_root, sweep, *TRAINING, *extra) if not o.startswith("paths.output_dir")
    ] + [f"hydra.sweep.dir={sweep}"]


def test_a_job_requeued_after_its_first_checkpoint_resumes_and_ends_as_the_straight_run(synthetic_root, tmp_path):
    sweep = tmp_path / "multirun"
    process = launch(tmp_path, *job_overrides(synthetic_root, sweep, "logger=wandb"), "seed=0", wandb_mode="offline")
    job = submitted_job(sweep)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    subprocess.run(["scontrol", "requeue", job], check=True)
    finish(process)
    settled(job)
    assert runs_of(job) >= 2, sacct(job, duplicates=True)  # restarted by SLURM itself, not resubmitted
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*.err"))
    assert "stopped by SIGTERM" in logs
    run = sweep / "0"
    expected = straight_run(synthetic_root, tmp_path)
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == read_checkpoint(expected)["global_step"]
    assert same_weights(run / "checkpoints" / "last.ckpt", expected)
    # The W&B run of the requeued job continued the same run id.
    run_id = (run / "wandb_run_id.txt").read_text().strip()
    offline_runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) >= 2 and all(p.name.endswith(f"-{run_id}") for p in offline_runs)


def test_a_job_at_its_time_limit_is_signalled_ahead_saves_requeues_and_finishes(synthetic_root, tmp_path):
    sweep = tmp_path / "multirun"
    # SIGUSR2 comes about a minute ahead of a 2-minute limit, so the job must requeue itself to finish: its
    # training must outlast that minute on a fast machine too (60 epochs took 37 s here in a fast hour).
    epochs = 200
    overrides = job_overrides(synthetic_root, sweep, f"trainer.max_epochs={epochs}", "test_after_fit=true")
    process = launch(tmp_path, *overrides, "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60", "seed=0")
    job = submitted_job(sweep)
    finish(process, timeout=1500)
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*.err"))
    assert "stopped by SIGUSR2" in logs and "The SLURM job was requeued" in logs
    settled(job)
    assert runs_of(job) >= 2
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["AP"] >= 0
    assert read_checkpoint(sweep / "0" / "checkpoints" / "last.ckpt")["epoch"] == epochs - 1
