"""Experiment loggers from the `logger` config group (CSV by default, W&B on request)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from clamp.errors import ClampError, did_you_mean

_LOGGERS = {"csv": CSVLogger, "wandb": WandbLogger}
# The run folder keeps its W&B run id, so a resumed (requeued) run continues the same W&B run.
WANDB_ID_FILE = "wandb_run_id.txt"


def _wandb_run_id(output_dir: Path) -> str:
    from lightning.pytorch.utilities import rank_zero_only

    path = output_dir / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # W&B run ids are short lowercase alphanumerics
    if rank_zero_only.rank == 0:  # only rank 0 opens the W&B run; the other ranks must not write the file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
    return run_id


def build_loggers(logger_cfg: Mapping[str, Any], run_cfg: DictConfig, output_dir: Path) -> list[Logger]:
    """One logger per key of ``logger_cfg``; each records the resolved run config."""
    from wandb.errors import UsageError

    loggers: list[Logger] = []
    for name, kwargs in (OmegaConf.to_container(logger_cfg, resolve=True) or {}).items():
        if name not in _LOGGERS:
            raise ClampError(
                f"logger '{name}' is not supported{did_you_mean(name, _LOGGERS)}; choose from {sorted(_LOGGERS)}"
            )
        if name == "wandb":
            from clamp.tables.runs import row_key

            row = "_".join(part for part in row_key(OmegaConf.to_container(run_cfg, resolve=True)) if part)
            kwargs = {"id": _wandb_run_id(output_dir), "resume": "allow", "job_type": row, **kwargs}
        logger = _LOGGERS[name](**kwargs)
        if name == "wandb" and logger._wandb_init.get("anonymous") is None:
            # Lightning always passes anonymous=None, which W&B answers with a deprecation warning on stderr.
            del logger._wandb_init["anonymous"]
        try:
            logger.log_hyperparams(OmegaConf.to_container(run_cfg, resolve=True))
        except UsageError as err:
            raise ClampError(
                f"logger=wandb: {err} Log in with `wandb login` or set WANDB_API_KEY, or log "
                "offline with WANDB_MODE=offline (and `wandb sync` later)"
            ) from None
        loggers.append(logger)
    return loggers
