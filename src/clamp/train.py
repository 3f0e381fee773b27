"""Train (and then test) a pose model: ``python -m clamp.train +experiment=fewshot20``.

With no experiment it runs the offline demo configuration. ``--cfg job`` prints the composed
config; ``-m`` sweeps (a whole table: ``-m +experiment=zeroshot_bovidae_canidae model=clamp,simplebaseline``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import warnings

import hydra
from omegaconf import DictConfig, OmegaConf

from clamp.cli import CONFIG_PATH, run_entry_point

log = logging.getLogger("clamp.train")


def build_datamodule(cfg: DictConfig, model: Any, output_dir: Path):
    """The data module for ``cfg.data`` / ``cfg.split``, shaped by the model's input geometry."""
    from clamp.lightning.datamodule import PoseDataModule

    data = OmegaConf.to_container(cfg.data, resolve=True)
    input_size = tuple(model.input_size)
    return PoseDataModule(
        keypoints=data["keypoints"],
        root=data["root"],
        splits=data["splits"],
        split=OmegaConf.to_container(cfg.split, resolve=True),
        input_size=input_size,
        heatmap_size=tuple(model.heatmap_size),
        coarse_size=(input_size[0] // model.feature_stride, input_size[1] // model.feature_stride),
        batch_size=data["batch_size"],
        num_workers=data["num_workers"],
        sigma=data["sigma"],
        augmentation=data["augmentation"],
        seed=cfg.seed,
        manifest_path=str(output_dir / "split_manifest.json"),
        generate=data.get("generate"),
    )


def build_trainer(cfg: DictConfig, output_dir: Path):
    """Lightning Trainer with checkpoints (last + best AP), loggers and a progress bar."""
    # The frozen CLIP text encoder stays in eval mode on purpose (no dropout on frozen weights).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    from clamp.lightning.callbacks import WandbEvaluationLogger
    from clamp.lightning.loggers import build_loggers

    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("channels_last", None)
    every = cfg.callbacks.checkpoint_every_n_epochs
    callbacks = [
        ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="best-epoch{epoch:03d}",
                        monitor="val/AP", mode="max", save_top_k=1, save_last=True,
                        auto_insert_metric_name=False, every_n_epochs=every),
    ]
    if cfg.callbacks.rich_progress_bar:
        callbacks.append(RichProgressBar())
    loggers = build_loggers(cfg.logger, cfg)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        callbacks.append(WandbEvaluationLogger(num_images=cfg.callbacks.log_images))
    return L.Trainer(default_root_dir=str(output_dir), callbacks=callbacks, logger=loggers or False, **trainer_cfg)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then evaluate the best checkpoint on the test split; returns the test metrics."""
    import lightning as L
    import torch

    from clamp.lightning.datamodule import check_dataset_files
    from clamp.lightning.module import PoseEstimationModule

    if cfg.data.get("generate") is None:
        check_dataset_files(cfg.data.keypoints if isinstance(cfg.data.keypoints, str) else "custom",
                            cfg.data.root, cfg.data.splits)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    module = PoseEstimationModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
    )
    if cfg.trainer.get("channels_last"):
        module = module.to(memory_format=torch.channels_last)
    datamodule = build_datamodule(cfg, module.model, output_dir)
    trainer = build_trainer(cfg, output_dir)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics: dict[str, Any] = {}
    if cfg.test_after_fit:
        best = trainer.checkpoint_callback.best_model_path or None
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics = module.last_evaluation
        if trainer.is_global_zero:
            report_metrics(metrics, output_dir / "metrics.json", f"test metrics ({best or 'last weights'})")
    finish_loggers(trainer)
    return metrics


def finish_loggers(trainer) -> None:
    """Close W&B runs, so that each job of a multirun is its own run and offline files are complete."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            logger.experiment.finish()


def report_metrics(metrics: dict[str, Any], path: Path, title: str) -> None:
    """Write ``metrics`` as JSON and print a small table of the headline OKS metrics."""
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    keys = ("AP", "AP50", "AP75", "APM", "APL", "AR")
    print(f"\n{title}")
    print("  ".join(f"{k:>6}" for k in keys))
    print("  ".join(f"{100 * metrics[k]:6.1f}" for k in keys))
    log.info("metrics written to %s", path)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> None:
    run_entry_point(train, cfg)


if __name__ == "__main__":
    main()
