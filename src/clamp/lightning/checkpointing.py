"""Checkpoints that survive: atomic writes, the latest state at every epoch, pre-emption signals, resume.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the same folder and
  renames it over the target, so a crash mid-write never leaves a broken ``last.ckpt``.
* :class:`LatestCheckpoint` keeps ``checkpoints/last.ckpt`` = the latest state: at the end of every
  training epoch (after its validation) and every ``every_n_steps`` optimizer steps when set.
  The best-AP checkpoint is Lightning's ``ModelCheckpoint``, in its own file.
* :class:`PreemptionHandler`: SIGTERM (what schedulers send on pre-emption, and ``scontrol requeue``),
  SIGUSR1 / SIGUSR2 (SLURM's warning ahead of the time limit, ``--signal``) and SIGINT (Ctrl-C) save
  ``last.ckpt`` at the end of the current step and stop the run with :class:`Preempted`; the entry point
  exits non-zero (128 + the signal number). Under SLURM a warning signal also requeues the job
  (``scontrol requeue``), and the requeued job resumes from that checkpoint by itself.
* :func:`resolve_resume`: ``ckpt_path=auto`` (the default) resumes the run folder's own ``last.ckpt``
  when there is one, ``last`` requires it, a path names any checkpoint, ``null`` starts afresh.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.utilities.exceptions import SIGTERMException

from clamp.checkpoint import CheckpointError
from clamp.errors import ClampError
from clamp.files import give_default_mode

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
_REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, *_REQUEUE_SIGNALS)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, flushed to disk, then renamed over it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            give_default_mode(handle)  # mkstemp's 0600 would make the renamed checkpoint private
            with os.fdopen(handle, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # Only tensors and plain containers, whatever the caller asks (checkpoints may come from strangers).
        from clamp.checkpoint import read_checkpoint

        return read_checkpoint(path)


class LatestCheckpoint(L.Callback):
    """Keep ``<dirpath>/last.ckpt`` the latest training state (module docstring)."""

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ClampError(f"callbacks.checkpoint_every_n_steps={every_n_steps}: give a positive number or null")
        self.path = Path(dirpath) / LAST_CHECKPOINT
        self.every_n_steps = every_n_steps
        self.saved: tuple[int, str] | None = None  # (global step, describe_position) of the last save in this run

    def save(self, trainer: L.Trainer) -> str:
        """Save the latest state; returns where it stands (:func:`describe_position`)."""
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved = (trainer.global_step, describe_position(trainer, *training_position(trainer)))
        return self.saved[1]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        due = bool(self.every_n_steps) and step > 0 and step % self.every_n_steps == 0
        if due and (self.saved is None or self.saved[0] != step):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)


def epoch_label(trainer: L.Trainer, epoch: int) -> str:
    """``epoch 3/8`` for the epoch of index ``epoch`` (counted from 1, as every line and bar shows it)."""
    total = trainer.max_epochs
    return f"epoch {epoch + 1}/{total}" if total is not None and total > 0 else f"epoch {epoch + 1}"


def training_position(trainer: L.Trainer) -> tuple[int, int]:
    """(epochs done, batches done in the epoch that is running), as it stands when a checkpoint is saved."""
    # Lightning counts an epoch as processed before its end hooks (where checkpoints are saved), so
    # ``processed`` is the epoch to run next; it is still running when it was started but not processed.
    epochs = trainer.fit_loop.epoch_progress.current
    mid_epoch = epochs.started > epochs.processed
    return epochs.processed, trainer.fit_loop.epoch_loop.batch_progress.current.processed if mid_epoch else 0


def describe_position(trainer: L.Trainer, epochs: int, batches: int) -> str:
    """``after epoch 2/4`` or ``3 of 8 batches into epoch 3/4``, for messages about saved states."""
    if batches == 0:
        return f"after {epoch_label(trainer, epochs - 1)}" if epochs else "before the first epoch"
    total = trainer.num_training_batches
    of_total = f" of {total}" if isinstance(total, int) else ""
    noun = "batch" if batches == 1 and not of_total else "batches"
    return f"{batches}{of_total} {noun} into {epoch_label(trainer, epochs)}"


def latest_checkpoint_note(trainer: L.Trainer | None) -> str:
    """A true sentence about the newest checkpoint of this run, for messages of runs that stop."""
    latest = next(
        (cb for cb in (trainer.callbacks if trainer is not None else []) if isinstance(cb, LatestCheckpoint)), None
    )
    if latest is None:
        return "No checkpoint is written by this run."
    if latest.saved is None:
        if latest.path.is_file():
            return f"{latest.path} is the checkpoint this run resumed from; this run saved none yet."
        return "No checkpoint was saved yet (the first is written at the end of the first epoch)."
    step, position = latest.saved
    return f"{latest.path} holds the state after step {step} ({position})."


class Preempted(ClampError):
    """The run was stopped by a signal after saving its state (exit status 128 + the signal number)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class PreemptionHandler(L.Callback):
    """Turn SIGTERM / SIGUSR1 / SIGUSR2 / SIGINT into "save ``last.ckpt`` at the next step, then stop".

    The handler only records the signal; the save happens between steps, where the state is
    consistent. In DDP the ranks agree on the flag at every step, so they save at the same step. A
    second SIGINT interrupts at once. Under SLURM, SIGUSR1/SIGUSR2 also requeue the job.
    """

    def __init__(self, latest: LatestCheckpoint) -> None:
        self.latest = latest
        self.received: int | None = None
        self.stopped: Preempted | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self._previous:
            return
        for signum in _STOP_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals cannot be handled here
                return

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _agreed_signal(self, trainer: L.Trainer) -> int | None:
        received = self.received or 0
        if trainer.world_size > 1:
            flag = torch.tensor([received], device=trainer.strategy.root_device)
            received = int(trainer.strategy.reduce(flag, reduce_op="max").item())
        return received or None

    def _save_and_stop(self, trainer: L.Trainer, signum: int) -> Preempted:
        """Save the latest state, requeue under SLURM for a warning signal, and say so."""
        position = self.latest.save(trainer)
        name = signal.Signals(signum).name
        requeued = ""
        if signum in _REQUEUE_SIGNALS and trainer.is_global_zero and _requeue_slurm_job():
            requeued = " The SLURM job was requeued and will resume from it."
        self.stopped = Preempted(
            signum,
            f"stopped by {name} at step {trainer.global_step} ({position}); saved "
            f"{self.latest.path}.{requeued} Resume with ckpt_path={self.latest.path} (a rerun in the same "
            "run folder resumes by itself).",
        )
        return self.stopped

    def _stop_if_signalled(self, trainer: L.Trainer) -> None:
        signum = self._agreed_signal(trainer)
        if signum is not None:
            raise self._save_and_stop(trainer, signum)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning's own SIGTERM handling ends the run with SIGTERMException (exit status 0) at an epoch
        # end or inside an evaluation, before our next step boundary: save there too; the entry point
        # turns it into the same non-zero stop (``stopped``).
        if isinstance(exception, SIGTERMException) and self.received and self.stopped is None:
            self._save_and_stop(trainer, self.received)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._stop_if_signalled(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._stop_if_signalled(trainer)


def _requeue_slurm_job() -> bool:
    """``scontrol requeue`` this SLURM job (array task aware); False when not under SLURM or it fails."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        return False
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode:
        log.warning("scontrol requeue %s failed: %s", job, result.stderr.strip())
    return result.returncode == 0


def resolve_resume(ckpt_path: str | None, checkpoint_dir: Path) -> Path | None:
    """The checkpoint to resume from for ``ckpt_path`` (module docstring), or None for a fresh start."""
    own = checkpoint_dir / LAST_CHECKPOINT
    if ckpt_path in (None, "", "null", "none"):
        if own.is_file():
            raise CheckpointError(
                f"{checkpoint_dir.parent} already holds a run ({own}); a fresh start would overwrite it. Resume it "
                "with ckpt_path=auto (the default), or start in another folder (hydra.run.dir=...)"
            )
        return None
    if ckpt_path == "auto":
        return own if own.is_file() else None
    if ckpt_path == "last":
        if not own.is_file():
            raise CheckpointError(f"ckpt_path=last: this run folder has no {own} to resume from")
        return own
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (ckpt_path= takes a checkpoint file, last, auto or null)")
    return path
