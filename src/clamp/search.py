"""Hyperparameter search: Hydra's Optuna sweeper (the ``optuna`` extra), made to continue a stopped search.

``python -m clamp.train -m +experiment=fewshot20 +hparams_search=clamp_fewshot`` runs the search of
``conf/hparams_search/clamp_fewshot.yaml``; every trial is a normal run whose Hydra job returns its best
val/AP (:func:`clamp.train.train_job`), the objective. The sweeper is the plugin's with what a long search
needs (``hydra_plugins.clamp_sweeper.ContinuableOptunaSweeper``, which Hydra finds in its plugin namespace,
runs this module's :func:`sweep`):

* the study is a SQLite file in the sweep folder, which is created first (SQLite does not make folders);
* ``n_trials`` is the study's total: rerunning the same command runs only the trials still to do;
* trial N runs in ``<sweep dir>/N`` (Hydra's job number is Optuna's trial number; the plugin numbers the
  jobs of every process from 0, so a continued search would write into the first trials' folders);
* a trial that a stopped search left running is run again first, with its own values, in its own folder,
  where the training resumes its ``last.ckpt``;
* the sampler's seed moves on by the trials already in the study, so that a continued search does not
  draw the first trials' values again;
* a study refuses to be continued by another command (say a smoke search and a real one in one folder);
* a failed trial is recorded failed with its error (``max_failure_rate`` says when the search stops);
  until a trial has completed, a failed one stops the search (a missing dataset would fail them all) with
  one line, exit status 2.

One search process per study: trials found running are taken to be those of a stopped search.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate

from clamp.errors import ClampError

log = logging.getLogger("clamp.search")

#: The study's user attribute holding the command that started it.
COMMAND_ATTR = "clamp_command"


class SearchError(ClampError):
    """A search that cannot go on: another command's study, or no trial completed."""


def sqlite_path(storage: Any) -> Path | None:
    """The database file of a ``sqlite:///PATH`` storage URL (None for other storages)."""
    text = str(storage or "")
    return Path(text[len("sqlite:///") :]) if text.startswith("sqlite:///") else None


def trial_overrides(trial: optuna.trial.FrozenTrial) -> tuple[str, ...]:
    """The command-line overrides a trial ran with: its sampled values and the search's fixed values."""
    return tuple(f"{name}={value}" for name, value in {**trial.params, **trial.user_attrs}.items())


def finished(study: optuna.Study) -> int:
    """Trials of ``study`` that are over (completed, failed or pruned)."""
    return sum(t.state.is_finished() for t in study.trials)


def prepare_storage(impl: Any) -> None:
    """Create the folder of the study's SQLite file (the sweep folder; SQLite does not make folders)."""
    database = sqlite_path(impl.storage)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)


def sweep(impl: Any, arguments: list[str]) -> None:
    """Run (or continue) the search of the plugin's sweeper ``impl`` (``OptunaSweeperImpl``). A user error
    ends it with one line and exit status 2, as in the commands (a trial's own error fails only the trial)."""
    try:
        _sweep(impl, arguments)
    except ClampError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _sweep(impl: Any, arguments: list[str]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # this module and the plugin say what happens
    if impl.storage is None:  # an in-memory study cannot be continued: the plugin as it is
        impl.sweep(arguments)
        return
    study = optuna.create_study(
        study_name=impl.study_name, storage=impl.storage, directions=impl._get_directions(), load_if_exists=True
    )
    command = _command(impl, arguments)
    started = study.user_attrs.get(COMMAND_ATTR)
    if started is None:
        study.set_user_attr(COMMAND_ATTR, command)
    elif started != command:
        raise SearchError(
            f"{impl.storage}: study {study.study_name} was started by another command "
            f"({_differences(started, command)}); rerun that command to continue it, or start a new study "
            "with search.name=NAME"
        )
    if study.trials:
        log.info(
            "continuing study %s: %d of %d trials finished, best val/AP %s",
            study.study_name,
            finished(study),
            impl.n_trials,
            _best(study),
        )
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.RUNNING:
            _rerun(impl, study, trial)
    to_do = max(0, impl.n_trials - finished(study))
    impl.job_idx = len(study.trials)  # the next trial's number is the next job's number
    _move_seed(impl, len(study.trials))
    # Until a trial completes, a failure is more likely the setup's (data, weights, a config value) than the
    # sampled values': the first trial runs alone, and its failure stops the search instead of repeating.
    batches = [to_do] if _completed(study) or to_do < 2 else [1, to_do - 1]
    for n_trials in batches:
        impl.n_trials = n_trials
        try:
            impl.sweep(arguments)
        except ValueError:  # the plugin asks the study for its best trial: is there none?
            if _completed(study):
                raise
            if not study.trials:
                raise SearchError(
                    f"study {study.study_name} has no trials: set hydra.sweeper.n_trials above 0"
                ) from None
            raise SearchError(
                f"no trial of study {study.study_name} completed ({finished(study)} failed), and until one does a "
                "failed trial stops the search: its error is above, and in its trial's log "
                f"({impl.config.hydra.sweep.dir}/<trial>/); fix it and rerun the same command to continue"
            ) from None


def _completed(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _rerun(impl: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Run a trial the stopped search left running, in its own folder (the training resumes there)."""
    log.info("trial %d was left running by a stopped search: running it again", trial.number)
    (job,) = impl.launcher.launch([trial_overrides(trial)], initial_job_idx=trial.number)
    try:
        value = float(job.return_value)
    except Exception as err:  # the trial's own error: recorded with it, as the plugin records the others
        log.warning("trial %d failed: %s", trial.number, err)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial.number, value)


def _move_seed(impl: Any, offset: int) -> None:
    """A seeded sampler drawn anew with ``seed + offset``, so that a continued search draws new values."""
    sampler_cfg = impl.config.hydra.sweeper.get("sampler")
    if offset and sampler_cfg is not None and sampler_cfg.get("seed") is not None:
        impl.sampler = instantiate(sampler_cfg, seed=int(sampler_cfg.seed) + offset)


def _command(impl: Any, arguments: list[str]) -> list[str]:
    """What makes a study: the command's overrides and the search space (its number of trials aside)."""
    space = [f"hydra.sweeper.params.{key}={value}" for key, value in (impl.params or {}).items()]
    return sorted([*arguments, *space])


def _differences(started: list[str], now: list[str]) -> str:
    gone, added = sorted(set(started) - set(now)), sorted(set(now) - set(started))
    parts = ([f"it had {' '.join(gone)}"] if gone else []) + ([f"this command has {' '.join(added)}"] if added else [])
    return "; ".join(parts)


def _best(study: optuna.Study) -> str:
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    return f"{max(values):.4f}" if values else "none yet"
