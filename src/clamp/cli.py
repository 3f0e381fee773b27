"""What the Hydra entry points share: configs, the command-line check, quiet output, one error handler.

Every entry point (``clamp.train``, ``clamp.eval``, ``clamp.predict``, ``clamp.export``) is made by
:func:`hydra_entry_point`:

* the overrides on the command line are checked against the composed config before anything runs;
  a misspelt key or option gets one line with the closest names (``trainer.max_epoch`` -> did you mean
  ``trainer.max_epochs``?), and a table experiment without ``-m`` is refused;
* the console carries the progress report and the results, not library banners and warnings (they
  still go to the run's log file);
* a :class:`~clamp.errors.ClampError` (bad data, weights, checkpoint, config, input) is printed as one
  line with exit status 2; a run stopped by a signal exits with 128 + the signal number.
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clamp.errors import ClampError, close_matches, did_you_mean

# Before torch is imported (the commands import it later): OpenMP threads that wait at a barrier sleep
# instead of spinning. On a node shared with other jobs a spinning thread holds a core that its
# descheduled partner needs; an idle machine runs as fast either way (README, "On a shared machine").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The configs live in the repository's conf/ and are installed as the package `clamp.conf`;
# an absolute path works the same from an editable and a regular install.
CONFIG_PATH = str(importlib.resources.files("clamp.conf"))

log = logging.getLogger("clamp")

HEADLINE_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
_HYDRA_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
    "--info",
    "-i",
}
# Library messages that are noise on a console (they stay in the run's log file at INFO).
_QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "torch.distributed")
_QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*Found \d+ module\(s\) in eval mode.*",
    r".*LeafSpec.*",
    r".*litlogger.*",
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*the `srun` command is available on your system but is not used.*",
)


class ConfigError(ClampError):
    """A command-line override that does not fit the configs."""


def _overrides(argv: list[str]) -> tuple[list[str], bool]:
    """The ``key=value`` overrides of a Hydra command line, and whether it is a multirun (``-m``)."""
    overrides, multirun, skip = [], False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg in _HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides, multirun


def _first_job(overrides: list[str]) -> list[str]:
    """The overrides of the first job of a sweep (``a=1,2`` -> ``a=1``), which compose like any run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    first = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_interval_sweep():  # a search space of the Optuna sweeper: interval(low, high)
            first.append(f"{override.get_key_element()}={override.value().start}")
        elif override.is_sweep_override():
            first.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
        else:
            first.append(override.input_line)
    return first


def _compose(config_name: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def _suggest_key(config_name: str, overrides: list[str], bad: str) -> str:
    """``" (did you mean trainer.max_epochs?)"`` for an override key ``bad`` the config lacks."""
    from omegaconf import DictConfig

    others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != bad]
    try:
        node: Any = _compose(config_name, others)
    except Exception:  # the other overrides have problems of their own; no suggestion then
        return ""
    parts = bad.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return ""
        if part not in node:
            prefix = ".".join(parts[:depth])
            hits = [f"{prefix}.{hit}" if prefix else hit for hit in close_matches(part, node.keys())]
            return f" (did you mean {' or '.join(hits)}?)" if hits else ""
        node = node[part]
    return ""


def check_command_line(config_name: str, argv: list[str]) -> None:
    """Compose the command line's overrides once, before Hydra runs, and explain what does not fit."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    overrides, multirun = _overrides(argv)
    try:
        first = _first_job(overrides)
        cfg = _compose(config_name, first)
    except OverrideParseException as err:
        raise ConfigError(f"cannot parse the command line: {str(err).splitlines()[0]}") from None
    except MissingConfigException as err:
        text = str(err)
        found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        if found:
            group, option = found.groups()
            if group == "hydra/sweeper" and option == "optuna":
                raise ConfigError(
                    "the Optuna sweeper of a hyperparameter search is an optional extra: pip install -e '.[optuna]'"
                ) from None
            raise ConfigError(
                f"there is no {group}={option}{did_you_mean(option, options)}; options of "
                f"'{group}': {', '.join(options)}"
            ) from None
        raise ConfigError(text.splitlines()[0]) from None
    except ConfigCompositionException as err:
        text = str(err)
        found = re.search(r"override '([^']+)'", text)
        if found:
            key = found.group(1)
            raise ConfigError(
                f"unknown config key {key}{_suggest_key(config_name, first, key)}; to add a new key use +{key}=..."
            ) from None
        raise ConfigError(text.splitlines()[0]) from None
    launcher = str(cfg.hydra.get("launcher", {}).get("_target_", "")) if "launcher" in cfg.hydra else ""
    if "SlurmLauncher" in launcher and not isinstance(cfg.get("trainer", {}).get("devices"), int):
        raise ConfigError(
            f"hydra/launcher=slurm: set trainer.devices to the number of GPUs per node (got "
            f"{cfg.trainer.devices!r}); the job's GPUs and tasks per node follow it"
        )
    sweeper = cfg.hydra.get("sweeper", {})
    if is_search_sweeper(sweeper):
        _check_search(sweeper, multirun)
    sweep = sweeper.get("params")
    if sweep and not multirun:
        raise ConfigError(
            f"this experiment is a table sweep of {len(sweep)} axes ({', '.join(sweep)}); run it as "
            "a multirun with -m, or name one row with its overrides instead"
        )


def is_search_sweeper(sweeper: Any) -> bool:
    """Whether a ``hydra.sweeper`` config is a hyperparameter search (the Optuna sweeper, or ours of it)."""
    return "optuna" in str(sweeper.get("_target_", "")).lower()


def _check_search(sweeper: Any, multirun: bool) -> None:
    """A search maximises the best val/AP over a search space, as a multirun (conf/hparams_search/)."""
    if not multirun:
        raise ConfigError("a hyperparameter search runs as a multirun: add -m")
    target = str(sweeper.get("_target_"))
    if target.startswith("hydra_plugins."):  # registers the sweeper, which Hydra cannot find in an editable install
        importlib.import_module(target.rsplit(".", 1)[0])
    hint = "+hparams_search=clamp_fewshot (conf/hparams_search/) sets the search space, direction and study"
    if not sweeper.get("params"):
        raise ConfigError(f"hydra/sweeper=optuna: no search space (hydra.sweeper.params); {hint}")
    if str(sweeper.get("direction")).split(".")[-1] != "maximize":
        raise ConfigError(
            f"hydra.sweeper.direction={sweeper.get('direction')}: the objective is the best val/AP, so the "
            f"direction is maximize; {hint}"
        )


def in_search_trial() -> bool:
    """Whether this process runs a trial of a hyperparameter search (a job of the Optuna sweeper)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and is_search_sweeper(HydraConfig.get().get("sweeper", {}))


def quiet_console() -> None:
    """Keep library banners and known-harmless warnings off the console (see the module docstring)."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def quiet_other_ranks(trainer: Any) -> None:
    """In multi-process runs only rank 0 tells the console what happens (every rank would say the same)."""
    if not trainer.is_global_zero:
        logging.getLogger("clamp").setLevel(logging.WARNING)


def run_entry_point(task: Callable[..., Any], *args: Any) -> Any:
    """Run ``task``; exit 2 with one line (no traceback) on a user error, 128 + N when stopped by signal N."""
    from omegaconf.errors import MissingMandatoryValue

    from clamp.lightning.checkpointing import Preempted

    quiet_console()
    # Importing Lightning gave its logger a stderr handler of its own; Hydra's handlers already print
    # and keep the run's log file, so drop it to print each message once.
    logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch").handlers.clear()
    try:
        return task(*args)
    except Preempted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    except (ClampError, MissingMandatoryValue) as error:
        if in_search_trial():  # the sweeper records the trial failed with this error, and the search goes on
            log.error("error: %s", error)
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def hydra_entry_point(config_name: str, task: Callable[[Any], Any]) -> Callable[[], None]:
    """The ``main()`` of an entry point: check the command line, then run ``task(cfg)`` under Hydra (what
    ``task`` returns is the Hydra job's return value, which the Optuna sweeper takes as the objective)."""
    import hydra

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    def hydra_main(cfg: Any) -> Any:
        return run_entry_point(task, cfg)  # a job's return value: a hyperparameter search's objective

    @functools.wraps(task)
    def main() -> None:
        try:
            check_command_line(config_name, sys.argv[1:])
        except ClampError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        hydra_main()

    return main


def report_metrics(metrics: dict[str, Any], path: Path, title: str) -> None:
    """Write ``metrics`` as JSON and print a small table of the headline OKS metrics."""
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(f"\n{title}")
    # A multi-dataset run: one line per dataset, each scored alone, and their mean (what val/AP is).
    rows = {**(metrics.get("datasets") or {}), "mean": metrics} if metrics.get("datasets") else {"": metrics}
    width = max(len(name) for name in rows)
    print(f"{'':{width}}  " * bool(width) + "  ".join(f"{k:>6}" for k in HEADLINE_METRICS))
    for name, row in rows.items():
        print(f"{name:{width}}  " * bool(width) + "  ".join(f"{100 * row[k]:6.1f}" for k in HEADLINE_METRICS))
    skipped = metrics.get("unreadable_samples") or []
    if skipped:
        print(f"  {len(skipped)} unreadable image(s) were skipped and count as misses: {skipped[:3]}")
    log.info("metrics written to %s", path)
