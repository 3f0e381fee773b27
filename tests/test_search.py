"""Hyperparameter search (``+hparams_search=clamp_fewshot``, the ``optuna`` extra): the config, the command-line
check, the objective, and the sweeper that continues a stopped study without redoing or overwriting trials.

The sweeper tests run the real Hydra multirun in this process with a stand-in training (a job returns its
α1, so the objective of every trial is known); the slow test runs a real 3-trial smoke search, stops it after
2 trials and continues it."""

from __future__ import annotations

import csv
import json
import logging
import signal
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clamp.cli import ConfigError, _compose, check_command_line, hydra_entry_point
from clamp.errors import ClampError
from tests.helpers import run_cli, start_cli

optuna = pytest.importorskip("optuna", reason="the optuna extra is not installed: pip install -e '.[optuna]'")

SEARCH = ["+experiment=fewshot20", "+hparams_search=clamp_fewshot", "+debug=smoke"]
STUDY = "fewshot20_clamp_fewshot"


def _study_dir(root: Path) -> Path:
    return root / "multirun" / "fewshot20" / STUDY


def _trials(root: Path) -> list:
    storage = f"sqlite:///{_study_dir(root) / 'optuna.db'}"
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def test_the_search_config_sets_the_sweeper_the_study_in_the_sweep_folder_and_real_keys():
    cfg = _compose("train", ["+experiment=fewshot20", "+hparams_search=clamp_fewshot", "paths.root_dir=/r"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.clamp_sweeper.ContinuableOptunaSweeper"
    assert sweeper.direction == "maximize" and sweeper.study_name == STUDY
    assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db"
    assert cfg.hydra.sweep.dir == f"/r/multirun/fewshot20/{STUDY}"
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"  # the trial's number
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed
    assert set(sweeper.params) == {
        "loss.alpha_spatial",
        "loss.alpha_feature",
        "optimizer.lr",
        "optimizer.backbone_lr_mult",
    }
    for key in sweeper.params:  # every searched key is one the run config has
        assert OmegaConf.select(cfg, key) is not None, key
    assert set(cfg.logger) == {"csv"}  # the W&B group is set without turning W&B on


def test_trials_share_a_wandb_group_named_after_the_study_and_tables_keep_theirs():
    search = _compose("train", [*SEARCH, "logger=wandb"])
    table = _compose("train", ["+experiment=table2", "logger=wandb"])
    assert search.logger.wandb.group == STUDY
    assert table.logger.wandb.group == "table2"


def test_a_search_composes_with_the_slurm_launcher():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra is not installed")
    argv = ["-m", *SEARCH, "hydra/launcher=slurm", "trainer.devices=1"]
    check_command_line("train", argv)
    cfg = _compose("train", argv[1:])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.sweeper._target_.endswith("ContinuableOptunaSweeper")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (SEARCH, "a hyperparameter search runs as a multirun: add -m"),
        (["-m", "+experiment=fewshot20", "hydra/sweeper=optuna"], "no search space"),
        (["-m", *SEARCH, "hydra.sweeper.direction=minimize"], "the direction is maximize"),
    ],
)
def test_a_search_that_cannot_do_what_it_says_is_refused_before_it_runs(argv, message):
    with pytest.raises(ConfigError, match=message) as refused:
        check_command_line("train", argv)
    assert "+hparams_search=clamp_fewshot" in str(refused.value) or "-m" in message


def test_without_the_optuna_extra_a_search_says_how_to_install_it():
    code = (
        "import sys; sys.modules['hydra_plugins.hydra_optuna_sweeper'] = None\n"  # as if it were not installed
        "from clamp.cli import check_command_line\n"
        "check_command_line('train', ['-m', '+experiment=fewshot20', '+hparams_search=clamp_fewshot'])"
    )
    result = run_cli("-c", code, env={"PYTHONWARNINGS": "ignore"})
    assert result.returncode == 1 and "pip install -e '.[optuna]'" in result.stderr, result.stderr[-2000:]


def test_a_search_space_on_the_command_line_passes_the_check():
    check_command_line("train", ["-m", *SEARCH, "optimizer.weight_decay=tag(log, interval(1e-5, 1e-3))"])


def test_a_training_job_returns_its_best_val_ap_and_a_trial_without_one_fails(monkeypatch):
    import clamp.train as train_module

    monkeypatch.setattr(train_module, "run_training", lambda cfg: train_module.TrainingResult({"AP": 0.2}, 0.37))
    assert train_module.train_job(None) == 0.37  # the objective: best val/AP, not the test AP
    monkeypatch.setattr(train_module, "run_training", lambda cfg: train_module.TrainingResult({}, None))
    assert train_module.train_job(None) is None  # a run outside a search needs no val/AP
    monkeypatch.setattr(train_module, "in_search_trial", lambda: True)
    with pytest.raises(ClampError, match="never validated"):
        train_module.train_job(None)


# A stand-in training run, so that the sweeper is tested without training: its objective is its α1.
STOP_AT: dict[str, int] = {}  # {"trial": N}: the job of trial N is interrupted (as by Ctrl-C or a kill)
FAIL_AT: dict[str, int] = {}  # {"trial": N}: the job of trial N fails with a user error


def _stand_in_training(cfg) -> float:
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    output_dir, number = Path(hydra_cfg.runtime.output_dir), hydra_cfg.job.num
    with (output_dir / "runs.txt").open("a") as runs:  # one line per time a job ran in this folder
        runs.write(json.dumps({"alpha_spatial": cfg.loss.alpha_spatial, "lr": cfg.optimizer.lr}) + "\n")
    if STOP_AT.get("trial") == number:
        raise KeyboardInterrupt
    if FAIL_AT.get("trial") == number:
        raise ClampError(f"trial {number}: non-finite loss")
    return float(cfg.loss.alpha_spatial)


@pytest.fixture(autouse=True)
def _hydra_state_restored():
    """A Hydra run in this process configures logging and sets Hydra's global state: both are put back, so
    that the tests after these (in this worker) see neither a search's logging nor its Hydra config."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: lg.level for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)
    }
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lg in logging.Logger.manager.loggerDict.items():
        if isinstance(lg, logging.Logger):
            lg.setLevel(levels.get(name, logging.NOTSET))
            lg.disabled = False


def _search(monkeypatch, root: Path, n_trials: int, *extra: str) -> None:
    """``python -m clamp.train -m +experiment=fewshot20 +hparams_search=clamp_fewshot`` in this process."""
    from hydra.core.global_hydra import GlobalHydra

    argv = ["clamp.train", "-m", *SEARCH, f"paths.root_dir={root}", f"hydra.sweeper.n_trials={n_trials}", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        hydra_entry_point("train", _stand_in_training)()
    finally:
        GlobalHydra.instance().clear()


def _runs(root: Path, number: int) -> list[dict]:
    return [json.loads(line) for line in (_study_dir(root) / str(number) / "runs.txt").read_text().splitlines()]


def test_a_stopped_search_continues_in_new_folders_and_first_reruns_the_trial_it_left_running(tmp_path, monkeypatch):

    monkeypatch.setitem(STOP_AT, "trial", 1)
    with pytest.raises(KeyboardInterrupt):  # stopped in its second trial
        _search(monkeypatch, tmp_path, 3)
    assert [t.state.name for t in _trials(tmp_path)] == ["COMPLETE", "RUNNING"]
    monkeypatch.delitem(STOP_AT, "trial")
    _search(monkeypatch, tmp_path, 3)  # the same command continues the study to its 3 trials
    trials = _trials(tmp_path)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert sorted(p.name for p in _study_dir(tmp_path).iterdir() if p.is_dir()) == ["0", "1", "2"]
    first, again = _runs(tmp_path, 1)  # the interrupted trial ran again in its folder, with its own values
    assert first == again
    for trial in trials:  # every trial ran in the folder of its number, with the values the study records
        assert len(_runs(tmp_path, trial.number)) == (2 if trial.number == 1 else 1)
        assert _runs(tmp_path, trial.number)[-1]["alpha_spatial"] == trial.params["loss.alpha_spatial"] == trial.value
    assert len({t.params["loss.alpha_spatial"] for t in trials}) == 3  # the continued sampler drew new values


def test_failed_trials_are_recorded_and_a_study_keeps_to_its_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(FAIL_AT, "trial", 0)
    with pytest.raises(SystemExit) as stopped:  # its only trial failed
        _search(monkeypatch, tmp_path, 1)
    assert stopped.value.code == 2  # until a trial completes, a failure stops the search (the setup's, mostly)
    assert f"error: no trial of study {STUDY} completed (1 failed)" in capsys.readouterr().err
    monkeypatch.setitem(FAIL_AT, "trial", 2)
    _search(monkeypatch, tmp_path, 4)  # trial 1 completes; trial 2 fails, and the search goes on to trial 3
    assert [t.state.name for t in _trials(tmp_path)] == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert "Failed experiment: trial 2: non-finite loss" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        _search(monkeypatch, tmp_path, 5, "seed=1")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "was started by another command" in err and "this command has seed=1" in err
    assert len(_trials(tmp_path)) == 4


def _best_val_ap(run: Path) -> float:
    """The run's best val/AP as its own CSV log has it."""
    (version,) = run.glob("csv/version_*")
    return _best_val_ap_of_version(version)


def _best_val_ap_of_version(version: Path) -> float:
    with (version / "metrics.csv").open() as rows:
        return max((float(row["val/AP"]) for row in csv.DictReader(rows) if row.get("val/AP")), default=-1.0)


@pytest.mark.slow
def test_a_smoke_search_stopped_after_two_trials_continues_to_three(tmp_path):
    command = ["-m", "clamp.train", "-m", *SEARCH, f"paths.root_dir={tmp_path}", "speed.cpu_threads=1"]
    for n_trials in (2, 3):  # stopped after 2 trials, then the same command continues the study to 3
        done = run_cli(*command, f"hydra.sweeper.n_trials={n_trials}", timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    trials = _trials(tmp_path)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for trial in trials:
        run = _study_dir(tmp_path) / str(trial.number)
        assert (run / "split_manifest.json").is_file() and (run / "metrics.json").is_file()
        config = OmegaConf.load(run / "config.yaml")
        assert config.loss.alpha_spatial == trial.params["loss.alpha_spatial"]
        assert config.optimizer.lr == trial.params["optimizer.lr"]
        assert trial.value == pytest.approx(_best_val_ap(run))
        assert len(list(run.glob("csv/version_*"))) == 1  # trained once: no later trial wrote here
    table = run_cli("-m", "clamp.tables", _study_dir(tmp_path), "--sweep", "loss.alpha_spatial", "--format", "csv")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].count("alpha_spatial=") == 3


@pytest.mark.slow
def test_a_search_stopped_in_a_trial_resumes_that_trial_from_its_checkpoint(tmp_path):
    command = ["-m", "clamp.train", "-m", *SEARCH, f"paths.root_dir={tmp_path}", "hydra.sweeper.n_trials=2"]
    command += ["trainer.max_epochs=4", "speed.cpu_threads=1"]
    search = start_cli(*command)
    checkpoint = _study_dir(tmp_path) / "1" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not checkpoint.is_file() and search.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    search.send_signal(signal.SIGINT)  # Ctrl-C in the second trial, after its first epoch
    _, err = search.communicate(timeout=300)
    assert search.returncode == 128 + signal.SIGINT, err[-3000:]
    assert [t.state.name for t in _trials(tmp_path)] == ["COMPLETE", "RUNNING"]
    done = run_cli(*command, timeout=600)  # the same command continues the study
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _trials(tmp_path)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    run = _study_dir(tmp_path) / "1"
    assert "resuming" in (run / "fewshot20.log").read_text()
    assert len(list(run.glob("csv/version_*"))) == 2  # the stopped run and its resumption, in one folder
    assert trials[1].value == pytest.approx(max(_best_val_ap_of_version(v) for v in run.glob("csv/version_*")))
