"""What several test modules share: composing the real configs, fast run overrides, running the CLIs."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from clamp.cli import CONFIG_PATH

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}


@functools.lru_cache(maxsize=256)
def _compose(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    # Composing takes about 0.4 s here and many tests compose the same settings.
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=False)


def compose_train(overrides: list[str]) -> DictConfig:
    """The composed config of ``python -m clamp.train`` with ``overrides`` (a fresh copy each call)."""
    return copy.deepcopy(_compose("train", tuple(overrides)))


def compose_eval(overrides: list[str]) -> DictConfig:
    """The composed config of ``python -m clamp.eval`` (set ``paths.output_dir``: there is no Hydra run)."""
    return copy.deepcopy(_compose("eval", tuple(overrides)))


def fast_overrides(synthetic_root: Path, output_dir: Path, *extra: str) -> list[str]:
    """``+debug=tiny`` (a tiny CLAMP at 64 px, validated every epoch, CSV-logged) on the session's data."""
    return [
        "+debug=tiny",
        f"data.root={synthetic_root}",
        "data.generate=null",
        "trainer.max_epochs=1",
        f"paths.output_dir={output_dir}",
        *extra,
    ]


def run_cli(
    *args: str | Path, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, timeout: int = 180
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` offline and capture its output."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
