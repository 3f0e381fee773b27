"""Train (and then test) a pose model: ``python -m clamp.train +experiment=fewshot20``.

With no experiment it runs the offline demo configuration. ``--cfg job`` prints the composed
config; ``-m`` sweeps (a whole table: ``-m +experiment=table2``; a hyperparameter search:
``-m +hparams_search=clamp_fewshot``, see :mod:`clamp.search`). A rerun in the same run folder
resumes its ``checkpoints/last.ckpt`` (``ckpt_path=auto``), which is how requeued SLURM jobs continue.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clamp.cli import hydra_entry_point, in_search_trial, quiet_other_ranks, report_metrics
from clamp.errors import ClampError

log = logging.getLogger("clamp.train")


def build_datamodule(cfg: DictConfig, model: Any, output_dir: Path):
    """The data module of ``cfg.data`` (its ``_target_``) for ``cfg.split``, shaped by the model's geometry."""
    from hydra.utils import instantiate

    from clamp.codec import HeatmapCodec

    codec = HeatmapCodec.for_model(model)
    return instantiate(
        cfg.data,
        split=OmegaConf.to_container(cfg.split, resolve=True),
        input_size=codec.input_size,
        heatmap_size=codec.heatmap_size,
        coarse_size=codec.coarse_size,
        seed=cfg.seed,
        manifest_path=str(output_dir / "split_manifest.json"),
        _convert_="all",
    )


def build_trainer(cfg: DictConfig, output_dir: Path):
    """Lightning Trainer: latest + best-AP checkpoints (atomic), signal handling, loggers, progress."""
    import lightning as L
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from clamp.lightning.callbacks import EpochProgressBar, LineProgressBar, WandbEvaluationLogger
    from clamp.lightning.checkpointing import AtomicCheckpointIO, LatestCheckpoint, PreemptionHandler
    from clamp.lightning.loggers import SignalSafeWandbLogger, build_loggers
    from clamp.lightning.throughput import ThroughputLogger

    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    checkpoint_dir = output_dir / "checkpoints"
    latest = LatestCheckpoint(checkpoint_dir, every_n_steps=cfg.callbacks.get("checkpoint_every_n_steps"))
    callbacks = [
        ThroughputLogger(),  # first: it times the epoch before the others' end-of-epoch work (checkpoints)
        latest,
        ModelCheckpoint(
            dirpath=checkpoint_dir,
            filename="best-epoch{epoch:03d}",
            monitor="val/AP",
            mode="max",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        PreemptionHandler(latest),
        EpochProgressBar() if cfg.callbacks.rich_progress_bar and sys.stdout.isatty() else LineProgressBar(),
    ]
    loggers = build_loggers(cfg.logger, cfg, output_dir)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if any(isinstance(lg, SignalSafeWandbLogger) for lg in loggers):
        callbacks.append(WandbEvaluationLogger(num_images=cfg.callbacks.log_images))
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        # Requeueing is ours (PreemptionHandler saves first), not Lightning's own SIGUSR1 handler.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer_cfg.setdefault("enable_model_summary", False)
    return L.Trainer(
        default_root_dir=str(output_dir),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=plugins,
        use_distributed_sampler=False,
        **trainer_cfg,
    )


def _keypoint_spec_dict(keypoints: Any) -> dict[str, Any]:
    from clamp.keypoints import get_keypoint_spec

    return get_keypoint_spec(keypoints).to_dict()


def check_resume_compatible(checkpoint: Mapping[str, Any], cfg: DictConfig, path: Path) -> None:
    """Refuse, before any data is read, to resume a checkpoint of another model or keypoint set."""
    from clamp.checkpoint import CheckpointError, checkpoint_record

    recipe = checkpoint_record(checkpoint, path)["model"]
    model = OmegaConf.to_container(cfg.model, resolve=True)
    wanted = {
        "name": model["name"],
        "keypoints": _keypoint_spec_dict(model["keypoints"]),
        **dict(model.get("overrides") or {}),
    }

    def shown(value: Any) -> Any:
        return value["name"] if isinstance(value, dict) and "keypoint_names" in value else value

    differences = [
        f"{key}: checkpoint {shown(recipe.get(key))!r}, this run {shown(value)!r}"
        for key, value in wanted.items()
        if recipe.get(key) != value
    ]
    if differences:
        raise CheckpointError(
            f"cannot resume {path}: it was trained as another network ({'; '.join(differences)}). "
            "Resume with the config it was trained with, or start a new run (another hydra.run.dir)"
        )


def training_threads(setting: Any) -> int | None:
    """The training process's torch threads for ``speed.cpu_threads``: None keeps PyTorch's default."""
    if setting is None:
        return None
    if not isinstance(setting, int) or isinstance(setting, bool) or setting < 1:
        raise ClampError(f"speed.cpu_threads={setting!r}: give null (PyTorch's default) or a positive number")
    return setting


@dataclass(frozen=True)
class TrainingResult:
    """What a training run gives: its test metrics (those of metrics.json; empty with
    ``test_after_fit=false``) and its best val/AP (the best checkpoint's; None when it never validated)."""

    test_metrics: dict[str, Any]
    best_val_ap: float | None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then evaluate the best checkpoint on the test split; returns the test metrics."""
    return run_training(cfg).test_metrics


def train_job(cfg: DictConfig) -> float | None:
    """One job of ``python -m clamp.train``: a training run; returns its best val/AP, which a hyperparameter
    search (``+hparams_search=...``) maximises."""
    best = run_training(cfg).best_val_ap
    if best is None and in_search_trial():
        raise ClampError(
            "this trial never validated, so it has no val/AP to be judged by: keep trainer.limit_val_batches "
            "above 0 and trainer.check_val_every_n_epoch at most trainer.max_epochs"
        )
    return best


def run_training(cfg: DictConfig) -> TrainingResult:
    """Fit, then evaluate the best checkpoint on the test split (see :class:`TrainingResult`)."""
    import lightning as L
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from clamp.checkpoint import read_checkpoint
    from clamp.lightning.checkpointing import Preempted, PreemptionHandler, resolve_resume
    from clamp.lightning.datamodule import check_dataset_files, writes_dataset
    from clamp.lightning.module import PoseEstimationModule

    output_dir = Path(cfg.paths.output_dir)
    resume = resolve_resume(cfg.ckpt_path, output_dir / "checkpoints")
    if resume is not None:
        check_resume_compatible(read_checkpoint(resume), cfg, resume)
    if "datasets" in cfg.data:  # data=multi: every member's files (synthetic members are written)
        from clamp.lightning.multi import check_member_files

        check_member_files(OmegaConf.to_container(cfg.data, resolve=True))
    else:
        generate = OmegaConf.to_container(cfg.data.generate, resolve=True) if cfg.data.get("generate") else None
        if not writes_dataset(cfg.data.root, generate):
            dataset = cfg.data.keypoints if isinstance(cfg.data.keypoints, str) else "custom"
            check_dataset_files(dataset, cfg.data.root, cfg.data.splits, synthetic=generate)
    output_dir.mkdir(parents=True, exist_ok=True)
    threads = training_threads(cfg.speed.get("cpu_threads"))
    if threads is not None:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = PoseEstimationModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
    )
    if cfg.speed.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if cfg.speed.get("compile"):
        module.compile_model(None if cfg.speed.compile is True else str(cfg.speed.compile))
    datamodule = build_datamodule(cfg, module.model, output_dir)
    trainer = build_trainer(cfg, output_dir)
    quiet_other_ranks(trainer)
    if trainer.is_global_zero:
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        log.info(
            "%s: %s on %s (%s), run folder %s%s",
            cfg.task_name,
            module.model.config["name"],
            " + ".join(cfg.data.datasets) if "datasets" in cfg.data else cfg.data.root,
            cfg.split.mode,
            output_dir,
            f", resuming {resume}" if resume else "",
        )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        preemption = next(cb for cb in trainer.callbacks if isinstance(cb, PreemptionHandler))
        if preemption.stopped is None:
            raise
        finish_loggers(trainer, preemption.stopped.exit_code)
        raise preemption.stopped from None
    except Preempted as stopped:
        finish_loggers(trainer, stopped.exit_code)
        raise
    best_score = trainer.checkpoint_callback.best_model_score  # the monitored val/AP's best
    metrics: dict[str, Any] = {}
    if cfg.test_after_fit:
        best = trainer.checkpoint_callback.best_model_path or None
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
        metrics = module.last_evaluation
        if trainer.is_global_zero:
            report_metrics(metrics, output_dir / "metrics.json", f"test metrics ({best or 'last weights'})")
    finish_loggers(trainer)
    return TrainingResult(metrics, None if best_score is None else float(best_score))


def finish_loggers(trainer, exit_code: int = 0) -> None:
    """Close W&B runs, so that each job of a multirun is its own run and offline files are complete; a
    stopped run closes its W&B run with its exit status (a resumed run continues it)."""
    from clamp.lightning.loggers import SignalSafeWandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, SignalSafeWandbLogger) and trainer.is_global_zero:
            logger.guard(lambda: logger.experiment.finish(exit_code=exit_code))  # noqa: B023 (called at once)


main = hydra_entry_point("train", train_job)

if __name__ == "__main__":
    main()
