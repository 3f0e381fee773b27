#!/bin/bash
# Lightning's own SLURM auto-requeue under the hydra launcher: Slurm sends USR1 (instead of
# submitit's USR2) before the time limit; Lightning saves hpc_ckpt_N.ckpt in the run folder and
# calls `scontrol requeue`; the requeued run (same pickled call, same folder) resumes from it.
# Run from the repository root; CLAMP_ROOT (default /tmp/clamp_run) holds data/ and multirun/.
set -euo pipefail
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled NO_ALBUMENTATIONS_UPDATE=1
export CLAMP_ROOT=${CLAMP_ROOT:-/tmp/clamp_run} PYTHONPATH=$PWD/src
py=${PYTHON:-/work/main/.venv/bin/python}
log=$CLAMP_ROOT/train_usr1_probe.log
mkdir -p "$CLAMP_ROOT"
t0=$(date +%s)
rc=0
"$py" -m clamp.train -m +experiment=demo hydra/launcher=slurm \
    hydra.launcher.gpus_per_node=0 hydra.launcher.tasks_per_node=1 hydra.launcher.cpus_per_task=2 \
    hydra.launcher.mem_gb=2 hydra.launcher.timeout_min=2 '+hydra.launcher.additional_parameters={signal: USR1@50}' \
    data.generate.num_train=64 data.generate.num_val=16 data.generate.num_test=16 data.num_workers=0 \
    trainer.max_epochs=${EPOCHS:-20} trainer.check_val_every_n_epoch=5 callbacks.rich_progress_bar=false \
    seed=0 >"$log" 2>&1 || rc=$?
echo "master exited rc=$rc after $(( $(date +%s) - t0 )) s"
sweep=$(sed -n 's/.*sweep output dir : //p' "$log")
tail -n 3 "$log"
sub=$(ls -d "$sweep"/.submitit/*/ | grep -v '/[0-9]*_0/$' | tail -1)
jid=$(basename "$sub")
grep -hE "Starting with|USR1|auto-requeue|requeue|Requeued|SIGTERM|Restoring|hpc|max_epochs|Job completed|Traceback|Error" "$sub"/*_log.out | cut -c1-200
echo "-- $sweep/0/checkpoints:"; ls "$sweep/0/checkpoints" "$sweep/0"
grep -E "Seed set|Restored|Restoring" "$sweep/0/train.log" | cut -c1-200
sacct -D -j "$jid" -o JobID%12,State,ExitCode,Start,End,Elapsed
