#!/bin/bash
# Fact 3b: when a --signal=SIG@N warning and the time-limit kill reach which process.
#   ./timelimit_probe.sh OUTDIR TIME_MIN SIGNAL_SPEC [SIGNAL_SPEC...]
# submits one job per SIGNAL_SPEC (e.g. USR1@50 B:USR1@50) at once, waits for them, prints each
# job's signal log as seconds after the job started, and sacct.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 time_min=$2
shift 2
rm -rf "$out"; mkdir -p "$out"
export PROBE_DIR=$here
jobs=()
for spec in "$@"; do
    d=$out/${spec//[:@]/_}; mkdir -p "$d"
    jid=$(PROBE_LOG=$d/signals.log sbatch --parsable -J "tl-$spec" --time="$time_min" --signal="$spec" \
        -o "$d/out-%j.txt" "$here/probe_batch.sh")
    jobs+=("$jid:$spec:$d")
    echo "submitted $jid --time=$time_min --signal=$spec"
done
for j in "${jobs[@]}"; do
    jid=${j%%:*}
    while squeue -h -j "$jid" 2>/dev/null | grep -q .; do sleep 1; done
done
for j in "${jobs[@]}"; do
    IFS=: read -r jid spec d <<<"$j"
    # spec may contain ':' (B:USR1@50): take the directory as the last field
    d=${j##*:}; spec=${j#*:}; spec=${spec%:*}
    start=$(awk '/batch pid=.* start/{print $1; exit}' "$d/signals.log")
    echo "== job $jid --time=$time_min --signal=$spec (t = seconds after the batch script started)"
    awk -v s="$start" '{printf "  t=%7.2f  %s\n", $1-s, substr($0, index($0,$2))}' "$d/signals.log" | grep -v " start ppid"
    for f in "$d"/*.alive; do
        printf '  last heartbeat %-28s t=%7.2f\n' "$(basename "$f")" "$(awk -v s="$start" '{print $1-s}' "$f")"
    done
    echo "  -- output file:"; sed 's/^/  | /' "$d"/out-*.txt
    sacct -j "$jid" -o JobID,State,ExitCode,Start,End,Elapsed,Timelimit | sed 's/^/  /'
done
