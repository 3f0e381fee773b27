"""Log every catchable signal this process receives, with a wall-clock time stamp.

    python sigprobe.py LABEL LOGFILE [SECONDS]

Appends "<epoch s> <LABEL> pid=<pid> <event>" lines to LOGFILE, and every 0.2 s overwrites
LOGFILE.<LABEL>.run<SLURM_RESTART_COUNT>.alive with the current time, so that the moment of a SIGKILL is known afterwards.
Runs SECONDS (default 300; 3 when SLURM_RESTART_COUNT >= 1, so that a requeued run ends).
"""

import os
import signal
import sys
import time

label, logfile = sys.argv[1], sys.argv[2]
restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else (3.0 if restart >= 1 else 300.0)


def log(event: str) -> None:
    with open(logfile, "a") as f:
        f.write(f"{time.time():.3f} {label} pid={os.getpid()} {event}\n")


def handler(signum, frame):
    log(f"got {signal.Signals(signum).name}")


for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT, signal.SIGINT,
            signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM, signal.SIGXCPU, signal.SIGPIPE):
    signal.signal(sig, handler)

env = {k: os.environ.get(k) for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                       "SLURM_RESTART_COUNT", "SLURM_STEP_ID", "SLURM_PROCID")}
log(f"start ppid={os.getppid()} pgid={os.getpgid(0)} " + " ".join(f"{k}={v}" for k, v in env.items()))
alive = f"{logfile}.{label}.run{restart}.alive"
end = time.time() + seconds
while time.time() < end:
    with open(alive, "w") as f:
        f.write(f"{time.time():.3f}\n")
    time.sleep(0.2)
log("normal exit")
