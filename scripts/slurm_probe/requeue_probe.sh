#!/bin/bash
# Fact 3a: what `scontrol requeue JOBID` does to a running batch job.
# Needs a running cluster (scripts/local_slurm.sh start). Prints the signal log, the output file,
# the job's requeue record and sacct.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/tmp/slurm_probe/requeue}
rm -rf "$out"; mkdir -p "$out"
export PROBE_DIR=$here PROBE_LOG=$out/signals.log
ts() { date +%s.%3N; }
jid=$(sbatch --parsable -J requeue-probe -o "$out/out-%j.txt" "$here/probe_batch.sh")
echo "submitted $jid"
until grep -q "step pid=.* start" "$PROBE_LOG" 2>/dev/null && grep -q "batchchild pid=.* start" "$PROBE_LOG"; do sleep 0.2; done
sleep 1
echo "$(ts) driver: scontrol requeue $jid" | tee -a "$PROBE_LOG"
scontrol requeue "$jid"
for _ in $(seq 600); do
    st=$(sacct -n -X -P -j "$jid" -o State 2>/dev/null | tail -1)
    grep -q "SLURM_RESTART_COUNT=1" "$PROBE_LOG" 2>/dev/null && break
    sleep 0.2
done
echo "$(ts) driver: restarted run seen; squeue: $(squeue -h -j "$jid" -o '%i %T %r' 2>/dev/null)"
while squeue -h -j "$jid" 2>/dev/null | grep -q .; do sleep 0.5; done
echo "$(ts) driver: job left the queue"
echo "== signals.log"; cat "$PROBE_LOG"
echo "== last heartbeats (run0: the moment of the SIGKILL)"; for f in "$out"/*.alive; do echo "$(basename "$f"): $(cat "$f")"; done
echo "== output files"; ls "$out"; for f in "$out"/out-*.txt; do echo "-- $f"; cat "$f"; done
echo "== scontrol show job (Restarts, Reason)"; scontrol show job "$jid" 2>/dev/null | grep -oE "(JobId|Restarts|Requeue|JobState|Reason|RunTime)=[^ ]*" | tr '\n' ' '; echo
echo "== sacct"; sacct -j "$jid" -D -o JobID,JobName,State,ExitCode,Start,End,Elapsed
