#!/bin/bash
# Fact 3c/3d: a demo-training multirun through conf/hydra/launcher/slurm.yaml on the local cluster;
# once both array tasks wrote their first last.ckpt, task 0 gets `scontrol requeue` (SIGTERM path)
# and task 1 gets `scancel --signal=USR2` (submitit's pre-emption/time-out path).
# Run from the repository root; CLAMP_ROOT (default /tmp/clamp_run) holds data/ and multirun/.
set -euo pipefail
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled NO_ALBUMENTATIONS_UPDATE=1
export CLAMP_ROOT=${CLAMP_ROOT:-/tmp/clamp_run} PYTHONPATH=$PWD/src
py=${PYTHON:-/work/main/.venv/bin/python}
log=$CLAMP_ROOT/train_requeue_probe.log
mkdir -p "$CLAMP_ROOT"; : >"$log"
ts() { date +%T.%3N; }
t0=$(date +%s)
"$py" -m clamp.train -m +experiment=demo hydra/launcher=slurm \
    hydra.launcher.gpus_per_node=0 hydra.launcher.tasks_per_node=1 hydra.launcher.cpus_per_task=1 \
    hydra.launcher.mem_gb=2 hydra.launcher.timeout_min=60 \
    data.generate.num_train=64 data.generate.num_val=16 data.generate.num_test=16 data.num_workers=0 \
    trainer.max_epochs=${EPOCHS:-6} trainer.check_val_every_n_epoch=1 callbacks.rich_progress_bar=false \
    seed=0,1 >"$log" 2>&1 &
master=$!
until grep -q "sweep output dir" "$log"; do sleep 0.5; done
sweep=$(sed -n 's/.*sweep output dir : //p' "$log")
echo "$(ts) sweep dir $sweep"
until [[ -f $sweep/0/checkpoints/last.ckpt && -f $sweep/1/checkpoints/last.ckpt ]]; do sleep 0.5; done
arr=$(ls "$sweep/.submitit" | sed -n 's/^\([0-9]*\)_0$/\1/p')
echo "$(ts) both tasks have last.ckpt; array job $arr"
echo "$(ts) scontrol requeue ${arr}_0"; scontrol requeue "${arr}_0"
echo "$(ts) scancel --signal=USR2 ${arr}_1"; scancel --signal=USR2 "${arr}_1"
for _ in $(seq 40); do squeue -h -j "$arr" -o '  %i %T %r' ; echo "  $(ts)"; sleep 3; squeue -h -j "$arr" | grep -q . || break; done
rc=0; wait "$master" || rc=$?
echo "$(ts) master exited rc=$rc after $(( $(date +%s) - t0 )) s"
echo "== master output (last lines)"; tail -n 15 "$log"
for i in 0 1; do
    echo "== task $i: submitit log ${arr}_$i"
    grep -E "submitit|SIGTERM|signal|Exiting|Requeue|requeue|Restored|Restoring|resum|Epoch|Traceback|Error" \
        "$sweep/.submitit/${arr}_$i/${arr}_${i}_0_log.out" "$sweep/.submitit/${arr}_$i/${arr}_${i}_0_log.err" | cut -c1-220
    echo "-- files in $sweep/$i"; ls "$sweep/$i" "$sweep/$i/checkpoints"
done
sacct -D -j "$arr" -o JobID%14,State,ExitCode,Start,End
