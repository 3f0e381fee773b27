"""Fact 3c: what submitit's job wrapper does with SIGTERM, its USR2 warning and a requeue.

    python submitit_probe.py SCENARIO OUTDIR

Scenarios (each submits one job, drives it, prints the function's event log, the job's stdout/stderr
and what result() returned):
  requeue          plain function, `scontrol requeue` while it runs
  own_handler      the function installs its own SIGTERM/SIGUSR2 handlers, then `scontrol requeue`
  preempt_usr2     checkpointable callable, timeout_min=60: scancel --signal TERM then USR2
                   (submitit's own job._interrupt(), how submitit simulates a pre-emption)
  timeout_usr2     checkpointable callable, timeout_min=1, signal_delay_s=50: Slurm's own
                   time-limit warning; max_num_timeout from $MAX_NUM_TIMEOUT (default 0, as the
                   hydra launcher)
"""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit

scenario, outdir = sys.argv[1], Path(sys.argv[2])
events = outdir / "events.log"


def log(msg: str) -> None:
    with open(events, "a") as f:
        f.write(f"{time.time():.3f} pid={os.getpid()} restart={os.environ.get('SLURM_RESTART_COUNT')} {msg}\n")


def work(seconds_first: float = 300, seconds_again: float = 3) -> str:
    """Runs long in the first run, shortly once requeued."""
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    handlers = {s.name: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)}
    log("start handlers=" + ", ".join(f"{k}:{getattr(v, '__qualname__', v)}" for k, v in handlers.items()))
    log(f"cwd={os.getcwd()} job_id={submitit.JobEnvironment().job_id}")
    end = time.time() + (seconds_again if restart else seconds_first)
    while time.time() < end:
        time.sleep(0.2)
    log("end")
    return f"done in run restart={restart}"


def work_own_handler() -> str:
    def mine(signum, frame):
        log(f"own handler got {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, mine)
    signal.signal(signal.SIGUSR2, mine)
    return work()


class Checkpointable(submitit.helpers.Checkpointable):
    def __call__(self, seconds: float = 300) -> str:
        restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        log(f"Checkpointable.__call__ start (state={getattr(self, 'state', None)})")
        self.state = f"set in run {restart}"
        return work(seconds, 3)

    def checkpoint(self, *args, **kwargs):
        log(f"checkpoint() called with args={args} kwargs={kwargs}")
        return super().checkpoint(*args, **kwargs)


def main() -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    max_num_timeout = int(os.environ.get("MAX_NUM_TIMEOUT", "0"))
    ex = submitit.AutoExecutor(folder=outdir / "submitit" / "%j", cluster="slurm",
                               slurm_max_num_timeout=max_num_timeout)
    timeout_min = 1 if scenario == "timeout_usr2" else 60
    ex.update_parameters(timeout_min=timeout_min, cpus_per_task=1, mem_gb=1, name=f"sub-{scenario}",
                         slurm_signal_delay_s=50 if scenario == "timeout_usr2" else 90)
    fn = {"requeue": work, "own_handler": work_own_handler}.get(scenario) or Checkpointable()
    t0 = time.time()
    job = ex.submit(fn)
    print(f"submitted {job.job_id} ({scenario}, timeout_min={timeout_min}, max_num_timeout={max_num_timeout})", flush=True)
    print("sbatch script:\n" + (job.paths.submission_file.read_text()), flush=True)
    while not (events.exists() and "start" in events.read_text()):
        time.sleep(0.5)
    time.sleep(2)
    if scenario in ("requeue", "own_handler"):
        log(f"driver: scontrol requeue {job.job_id}")
        subprocess.check_call(["scontrol", "requeue", job.job_id])
    elif scenario == "preempt_usr2":
        log("driver: job._interrupt() = scancel --signal SIGTERM, then scancel --signal USR2")
        job._interrupt(timeout=False)
    try:
        result = job.result()
        print(f"result(): {result!r}")
    except Exception as e:  # noqa: BLE001
        print(f"result() raised {type(e).__name__}: {str(e).splitlines()[0]}")
    print(f"wall {time.time() - t0:.1f} s, state {job.state}, sacct calls {job.watcher.num_calls}")
    print("== events.log"); print(events.read_text())
    for name in ("stdout", "stderr"):
        print(f"== job {name} ({getattr(job.paths, name)})")
        print(getattr(job, name)() or "")
    print(subprocess.run(["sacct", "-D", "-j", job.job_id.split("_")[0], "-o", "JobID,State,ExitCode,Start,End"],
                         capture_output=True, text=True, check=False).stdout)


if __name__ == "__main__":
    main()
