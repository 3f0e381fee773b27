"""Experiment loggers from the `logger` config group (CSV by default, W&B on request)."""

from __future__ import annotations

from typing import Any, Mapping

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

_LOGGERS = {"csv": CSVLogger, "wandb": WandbLogger}


def build_loggers(logger_cfg: Mapping[str, Any], run_cfg: DictConfig) -> list[Logger]:
    """One logger per key of ``logger_cfg``; each records the resolved run config."""
    loggers: list[Logger] = []
    for name, kwargs in (OmegaConf.to_container(logger_cfg, resolve=True) or {}).items():
        if name not in _LOGGERS:
            raise ValueError(f"logger '{name}' is not supported; choose from {sorted(_LOGGERS)}")
        logger = _LOGGERS[name](**kwargs)
        logger.log_hyperparams(OmegaConf.to_container(run_cfg, resolve=True))
        loggers.append(logger)
    return loggers
