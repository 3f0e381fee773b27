"""The local single-node SLURM cluster of ``scripts/local_slurm.sh`` (opt in: ``pytest -m slow``).

Every test needs the cluster running (``sudo scripts/local_slurm.sh start``) and is skipped with a
reason otherwise. The start/stop test stops and restarts the daemons; it leaves the cluster running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "local_slurm.sh"


def _sinfo_works() -> str | None:
    """None when `sinfo` answers, else why not."""
    if shutil.which("sinfo") is None:
        return "sinfo not installed (run scripts/local_slurm.sh start)"
    try:
        # Without a slurm.conf, Slurm commands look for a controller through DNS and can hang.
        proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s"
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip() or proc.returncode} (run scripts/local_slurm.sh start)"
    return None


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def cluster_running():
    """Checked lazily, so that a default (not slow) run that deselects these tests never waits."""
    reason = _sinfo_works()
    if reason:
        pytest.skip(reason)


def run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def sacct_state(job_id: str) -> str:
    out = run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State", check=False).stdout.split()
    return out[-1] if out else ""


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_status_reports_every_daemon_running():
    proc = run("bash", str(SCRIPT), "status")
    for daemon in ("munged", "slurmctld", "slurmd"):
        assert any(line.split()[:2] == [daemon, "running"] for line in proc.stdout.splitlines()), proc.stdout
    assert "idle" in proc.stdout or "mix" in proc.stdout or "alloc" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts/local_slurm.sh start needs root")
def test_start_when_running_is_harmless():
    before = run("bash", str(SCRIPT), "status").stdout
    proc = run("bash", str(SCRIPT), "start", timeout=60)
    assert "cluster already running" in proc.stdout
    # The same daemons (same pids) still run.
    assert run("bash", str(SCRIPT), "status").stdout.splitlines()[:6] == before.splitlines()[:6]


def test_sbatch_wait_runs_a_job_that_sacct_reports(tmp_path):
    out = tmp_path / "out-%j.txt"
    proc = run(
        "sbatch",
        "--wait",
        "--parsable",
        "-J",
        "pytest-trivial",
        "-o",
        str(out),
        "--wrap",
        "echo hello from $SLURM_JOB_ID",
        timeout=120,
    )
    job_id = proc.stdout.strip().split(";")[0]
    assert (tmp_path / f"out-{job_id}.txt").read_text().strip() == f"hello from {job_id}"
    # The accounting record may lag the job's end by a moment.
    assert wait_for(lambda: sacct_state(job_id) == "COMPLETED", 20, f"sacct to report job {job_id} COMPLETED")


def test_requeue_restarts_the_same_job_with_a_restart_count(tmp_path):
    """`scontrol requeue`: SIGTERM to the batch script, the same job id runs again, SLURM_RESTART_COUNT=1."""
    log = tmp_path / "runs.log"
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f'echo "start restart=${{SLURM_RESTART_COUNT:-unset}} job=$SLURM_JOB_ID" >> {log}\n'
        "if [[ -z ${SLURM_RESTART_COUNT:-} ]]; then\n"
        f"  trap 'echo \"got SIGTERM\" >> {log}; exit 0' TERM\n"
        "  sleep 300 & wait\n"
        "fi\n"
    )
    proc = run("sbatch", "--parsable", "--open-mode=append", "-o", str(tmp_path / "out-%j.txt"), str(script))
    job_id = proc.stdout.strip().split(";")[0]
    wait_for(lambda: log.exists() and "start restart=unset" in log.read_text(), 60, "the first run")
    run("scontrol", "requeue", job_id)
    # Requeued jobs wait AuthInfo=cred_expire (10 s on the local cluster, 120 s by default) to restart.
    wait_for(lambda: sacct_state(job_id) == "COMPLETED", 150, f"job {job_id} to run again and complete")
    assert log.read_text().splitlines() == [
        f"start restart=unset job={job_id}",
        "got SIGTERM",
        f"start restart=1 job={job_id}",
    ]
    states = run("sacct", "-n", "-X", "-P", "-D", "-j", job_id, "-o", "State").stdout.split()
    assert states == ["REQUEUED", "COMPLETED"]


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts/local_slurm.sh start/stop needs root")
def test_stop_and_start_are_idempotent():
    try:
        run("bash", str(SCRIPT), "stop", timeout=120)
        assert run("bash", str(SCRIPT), "status", check=False).returncode == 3
        second = run("bash", str(SCRIPT), "stop", timeout=60)
        assert "slurmctld not running" in second.stdout
    finally:
        run("bash", str(SCRIPT), "start", timeout=180)
    assert run("bash", str(SCRIPT), "status").returncode == 0
