#!/bin/bash
# Pre-emption on the local cluster: a job of partition `local` holding every CPU, then a job of
# partition `urgent` (higher PriorityTier, PreemptMode=REQUEUE) that needs them.
#   VICTIM_ARGS="--signal=USR1@30" ./preempt_probe.sh [OUTDIR]   (extra sbatch options of the victim)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/tmp/slurm_probe/preempt}
rm -rf "$out"; mkdir -p "$out"
export PROBE_DIR=$here PROBE_LOG=$out/signals.log
ts() { date +%s.%3N; }
cpus=$(sinfo -h -o %c | head -1)
jid=$(sbatch --parsable -J victim -p local -c "$cpus" ${VICTIM_ARGS:-} --open-mode=append -o "$out/out-%j.txt" "$here/probe_batch.sh")
until grep -q "step pid=.* start" "$PROBE_LOG" 2>/dev/null; do sleep 0.2; done
sleep 1
echo "$(ts) driver: sbatch -p urgent -c $cpus (victim $jid)" | tee -a "$PROBE_LOG"
ujid=$(sbatch --parsable -J urgent -p urgent -c "$cpus" -o "$out/urgent-%j.txt" --wrap "echo \$(date +%s.%3N) urgent job runs >> $PROBE_LOG; sleep 5")
while squeue -h -j "$jid,$ujid" 2>/dev/null | grep -q .; do sleep 0.5; done
echo "== signals.log"; cat "$PROBE_LOG"
for f in "$out"/*.alive; do echo "$(basename "$f"): $(cat "$f")"; done
echo "== victim output"; cat "$out"/out-*.txt
sacct -D -j "$jid,$ujid" -o JobID,JobName,Partition,State,ExitCode,Start,End
