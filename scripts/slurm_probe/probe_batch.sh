#!/bin/bash
# Batch script of the signal probes: logs the signals the batch shell gets (traps), and starts
# one `srun` step and one plain child, both running sigprobe.py.
#   PROBE_LOG=/path/log sbatch [options] probe_batch.sh [SECONDS]
here=${PROBE_DIR:?}
log() { echo "$(date +%s.%3N) batch pid=$$ $*" >>"$PROBE_LOG"; }
for s in TERM USR1 USR2 CONT INT HUP QUIT; do trap "log got SIG$s" "$s"; done
log "start SLURM_JOB_ID=$SLURM_JOB_ID SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-unset} SLURM_ARRAY_TASK_ID=${SLURM_ARRAY_TASK_ID:-}"
echo "stdout line of run restart=${SLURM_RESTART_COUNT:-unset} at $(date +%T)"
srun --unbuffered python3 "$here/sigprobe.py" step "$PROBE_LOG" ${1:+"$1"} &
python3 "$here/sigprobe.py" batchchild "$PROBE_LOG" ${1:+"$1"} &
while true; do
    wait
    rc=$?
    ((rc > 128)) || break
done
log "end (wait rc=$rc)"
