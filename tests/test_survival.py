"""Runs that survive: latest checkpoints, atomic writes, signals, exact resume, bad data, bad checkpoints
and configs, non-finite losses, a quiet console."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clamp.checkpoint import CheckpointError, read_checkpoint
from clamp.errors import ClampError
from tests.helpers import compose_eval, compose_train, fast_overrides, run_cli, start_cli


def train_run(synthetic_root: Path, output_dir: Path, *extra: str) -> dict:
    from clamp.train import train

    return train(compose_train(fast_overrides(synthetic_root, output_dir, *extra)))


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


# ---- checkpoints -------------------------------------------------------------------------------------
def test_last_checkpoint_holds_the_latest_epoch_even_without_improvement(synthetic_root, tmp_path):
    train_run(synthetic_root, tmp_path, "trainer.max_epochs=3", "trainer.limit_train_batches=2")
    last = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 6)
    best = list((tmp_path / "checkpoints").glob("best-epoch*.ckpt"))
    assert len(best) == 1 and best[0].name != "last.ckpt"


def test_last_checkpoint_is_also_refreshed_every_n_steps(synthetic_root, tmp_path, monkeypatch):
    from clamp.lightning.checkpointing import LatestCheckpoint

    steps = []
    original = LatestCheckpoint.save
    monkeypatch.setattr(
        LatestCheckpoint, "save", lambda self, trainer: (steps.append(trainer.global_step), original(self, trainer))
    )
    train_run(
        synthetic_root,
        tmp_path,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "callbacks.checkpoint_every_n_steps=2",
    )
    assert steps == [2, 4, 5]


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    from clamp.lightning.checkpointing import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoints_get_the_mode_the_users_umask_gives_every_file(tmp_path, umask):
    import os

    from clamp.lightning.checkpointing import AtomicCheckpointIO

    previous = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1)}}, tmp_path / "last.ckpt")
        (tmp_path / "other.txt").write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == (tmp_path / "other.txt").stat().st_mode & 0o777
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask


# ---- signals -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_current_step_and_exits_non_zero(synthetic_root, tmp_path, signum):
    overrides = fast_overrides(synthetic_root, tmp_path, "trainer.max_epochs=200", "trainer.limit_train_batches=3")
    process = start_cli("-m", "clamp.train", *overrides)
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, (stdout[-2000:], stderr[-3000:])
    assert "Traceback" not in stderr and f"stopped by {signal.Signals(signum).name} at step" in stderr
    step = int(stderr.split(" at step ")[1].split()[0])
    assert read_checkpoint(last)["global_step"] == step > 0


def add_callback(patch: pytest.MonkeyPatch, callback) -> None:
    """Make clamp.train's trainers carry ``callback`` too (after its own)."""
    import clamp.train as train_module

    build = train_module.build_trainer

    def build_with_callback(cfg, output_dir):
        trainer = build(cfg, output_dir)
        trainer.callbacks.append(callback)
        return trainer

    patch.setattr(train_module, "build_trainer", build_with_callback)


def wandb_service_pids() -> list[int]:
    """The live W&B service processes (``wandb-core``) this process started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name == "wandb-core" and int(fields[1]) == os.getpid() and fields[0] not in "ZX":
            pids.append(int(text.split()[0]))
    return pids


def test_a_job_signal_that_also_ends_wandbs_service_still_saves_and_stops_cleanly(
    synthetic_root, tmp_path, monkeypatch, caplog
):
    import contextlib

    import lightning as L
    import wandb

    from clamp.lightning.checkpointing import Preempted

    class SignalTheWholeJob(L.Callback):
        """What SLURM does on a requeue: SIGTERM to every process of the job, W&B's service as well; here just
        after the training's own check of a step, so that W&B is called (the step's metrics) before the save."""

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                (service,) = wandb_service_pids()
                os.kill(service, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while wandb_service_pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
                signal.raise_signal(signal.SIGTERM)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    add_callback(monkeypatch, SignalTheWholeJob())
    with caplog.at_level("WARNING"), pytest.raises(Preempted, match="stopped by SIGTERM at step 3 "):
        train_run(synthetic_root, tmp_path, "trainer.max_epochs=2", "trainer.limit_train_batches=4", "logger=wandb")
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert any("W&B's service process has stopped" in r.getMessage() for r in caplog.records)
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
    with contextlib.suppress(Exception):  # the service this test killed: the next W&B user starts afresh
        wandb.teardown()
    from wandb.sdk.lib import module as wandb_globals

    wandb_globals.unset_globals()


# ---- exact resume ------------------------------------------------------------------------------------
RESUME = ("data.num_workers=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1")


def test_stopping_after_an_epoch_and_resuming_equals_the_straight_run_bit_for_bit(synthetic_root, tmp_path):
    train_run(synthetic_root, tmp_path / "straight", "trainer.max_epochs=2", *RESUME)
    train_run(synthetic_root, tmp_path / "resumed", "trainer.max_epochs=1", *RESUME)
    train_run(synthetic_root, tmp_path / "resumed", "trainer.max_epochs=2", *RESUME)  # ckpt_path=auto
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_preempted_mid_epoch_and_resumed_equals_the_straight_run_bit_for_bit(synthetic_root, tmp_path, monkeypatch):
    import lightning as L

    import clamp.train as train_module
    from clamp.lightning.checkpointing import Preempted

    class SignalAtStep(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 5:  # the second step of epoch 1
                signal.raise_signal(signal.SIGTERM)

    train_run(synthetic_root, tmp_path / "straight", "trainer.max_epochs=2", *RESUME)
    build = train_module.build_trainer
    monkeypatch.setattr(
        train_module, "build_trainer", lambda cfg, out: (t := build(cfg, out), t.callbacks.append(SignalAtStep()), t)[0]
    )
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 6"):
        train_run(synthetic_root, tmp_path / "resumed", "trainer.max_epochs=2", *RESUME)
    monkeypatch.undo()
    train_run(synthetic_root, tmp_path / "resumed", "trainer.max_epochs=2", *RESUME)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_fresh_start_refuses_to_overwrite_a_run_folder(synthetic_root, trained_run):
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_run(synthetic_root, trained_run, "ckpt_path=null")


# ---- bad data ----------------------------------------------------------------------------------------
def broken_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    return root


def first_train_image(root: Path) -> tuple[dict, Path]:
    train = json.loads((root / "annotations" / "ap10k-train-split1.json").read_text())
    image = train["images"][0]
    return image, root / "data" / image["file_name"]


@pytest.mark.parametrize("damage", ["missing", "not_an_image", "wrong_size"])
def test_images_that_cannot_be_used_stop_the_run_before_the_first_step(synthetic_root, tmp_path, damage):
    root = broken_copy(synthetic_root, tmp_path)
    image, path = first_train_image(root)
    if damage == "missing":
        path.unlink()
    elif damage == "not_an_image":
        path.write_text("<html>404</html>")
    else:
        ann = root / "annotations" / "ap10k-train-split1.json"
        data = json.loads(ann.read_text())
        data["images"][0]["width"] += 10
        ann.write_text(json.dumps(data))
    from clamp.data.dataset import DatasetImageError

    expected = {"missing": "not found", "not_an_image": "not an image", "wrong_size": "gives"}[damage]
    with pytest.raises(DatasetImageError) as info:
        train_run(root, tmp_path / "run", "trainer.max_epochs=1")
    assert image["file_name"] in str(info.value) and expected in str(info.value)
    assert "1 of the " in str(info.value) and not (tmp_path / "run" / "checkpoints").exists()  # no step was run


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_a_truncated_image_is_skipped_and_named_and_too_many_stop_the_run(synthetic_root, tmp_path, caplog):
    root = broken_copy(synthetic_root, tmp_path)
    _, path = first_train_image(root)
    truncate(path)
    with caplog.at_level("WARNING"):
        train_run(root, tmp_path / "run", "trainer.max_epochs=1")
    assert any(path.name in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    train = json.loads((root / "annotations" / "ap10k-train-split1.json").read_text())
    for image in train["images"][1:4]:
        truncate(root / "data" / image["file_name"])
    with pytest.raises(ClampError, match="could not be decoded, more than the 1 allowed"):
        train_run(root, tmp_path / "run2", "trainer.max_epochs=1", "data.max_bad_fraction=0.0")


@pytest.mark.parametrize("stage", ["train", "val"])
def test_an_empty_set_gets_one_clear_message(synthetic_root, tmp_path, stage):
    root = broken_copy(synthetic_root, tmp_path)
    ann = root / "annotations" / f"ap10k-{stage}-split1.json"
    data = json.loads(ann.read_text())
    for record in data["annotations"]:
        record["keypoints"] = [0] * 51
        record["num_keypoints"] = 0
    ann.write_text(json.dumps(data))
    with pytest.raises(ClampError, match=f"the {stage} set is empty"):
        train_run(root, tmp_path / "run", "trainer.max_epochs=1")


# ---- bad checkpoints ---------------------------------------------------------------------------------
def bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Each broken kind of checkpoint file and the words its message must contain."""
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[:1000])
    (tmp_path / "garbage.ckpt").write_bytes(b"this is not a checkpoint" * 100)
    torch.save({"model.weight": torch.ones(2)}, tmp_path / "weights_only.ckpt")
    return {
        "missing": (tmp_path / "nowhere.ckpt", "not found"),
        "truncated": (tmp_path / "truncated.ckpt", "truncated or not a torch checkpoint"),
        "garbage": (tmp_path / "garbage.ckpt", "truncated or not a torch checkpoint"),
        "state_dict_only": (tmp_path / "weights_only.ckpt", "only weights"),
    }


def test_bad_checkpoints_for_eval_give_one_clear_error(trained_run, tmp_path):
    from clamp.eval import evaluate

    for kind, (path, words) in bad_checkpoints(tmp_path, trained_run / "checkpoints" / "last.ckpt").items():
        with pytest.raises(CheckpointError, match=words):
            evaluate(compose_eval([f"ckpt={path}", f"paths.output_dir={tmp_path / kind}"]))
    # ... printed by the entry point as one line with exit status 2:
    result = run_cli("-m", "clamp.eval", f"ckpt={tmp_path / 'garbage.ckpt'}", f"hydra.run.dir={tmp_path / 'cli'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: cannot read checkpoint {tmp_path / 'garbage.ckpt'}: it is truncated or not a torch checkpoint ("
    )


def test_an_eval_checkpoint_of_another_keypoint_set_fails_before_any_data_is_read(trained_run, tmp_path):
    from clamp.eval import evaluate

    with pytest.raises(CheckpointError, match="'ap10k' keypoints.*animalpose"):
        evaluate(
            compose_eval(
                [
                    f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
                    "data.keypoints=animalpose",
                    "data.root=/nonexistent",
                    f"paths.output_dir={tmp_path}",
                ]
            )
        )


def test_bad_or_foreign_checkpoints_for_resume_fail_before_any_data_is_read(synthetic_root, trained_run, tmp_path):
    for kind, (path, words) in bad_checkpoints(tmp_path, trained_run / "checkpoints" / "last.ckpt").items():
        with pytest.raises(CheckpointError, match=words):
            train_run(Path("/nonexistent"), tmp_path / kind, f"ckpt_path={path}")
    with pytest.raises(CheckpointError, match="keypoints: checkpoint 'ap10k', this run 'animalpose'"):
        train_run(
            Path("/nonexistent"),
            tmp_path / "other",
            f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
            "data.keypoints=animalpose",
        )


# ---- configs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["trainer.max_epoch=1"], "did you mean trainer.max_epochs"),
        (["data.augmentation.flip_prb=0.1"], "did you mean data.augmentation.flip_prob"),
        (["backbone=rn5"], "did you mean rn50"),
        (["+experiment=table1"], "run it as a multirun with -m"),
    ],
)
def test_misspelt_config_keys_get_close_matches(argv, words):
    from clamp.cli import ConfigError, check_command_line

    with pytest.raises(ConfigError, match=words):
        check_command_line("train", argv)


def test_a_misspelt_key_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    result = run_cli("-m", "clamp.train", "trainer.max_epoch=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: unknown config key trainer.max_epoch (did you mean trainer.max_epochs?); to add a new key use "
        "+trainer.max_epoch=..."
    ]


@pytest.mark.parametrize("family", ["Bovidea", "bovidae"])
def test_families_match_case_insensitively_and_misspellings_get_suggestions(synthetic_root, tmp_path, family):
    from clamp.data.coco import load_coco_keypoints
    from clamp.data.splits import SplitError, build_split

    train = load_coco_keypoints(synthetic_root / "annotations" / "ap10k-train-split1.json", "ap10k")
    if family == "bovidae":
        assert build_split(train, "family", train_family=family).train_family == "Bovidae"
    else:
        with pytest.raises(SplitError, match="did you mean Bovidae"):
            build_split(train, "family", train_family=family)


def test_wandb_without_an_api_key_is_one_line_and_exit_2(synthetic_root, tmp_path):
    env = {"WANDB_MODE": "online", "HOME": str(tmp_path), "WANDB_API_KEY": "", "NETRC": str(tmp_path / "none")}
    result = run_cli(
        "-m", "clamp.train", *fast_overrides(synthetic_root, tmp_path / "run", "logger=wandb"), env=env, timeout=60
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "wandb login" in result.stderr and "WANDB_MODE=offline" in result.stderr


# ---- non-finite losses -------------------------------------------------------------------------------
def test_a_non_finite_loss_names_step_terms_images_and_what_was_saved(synthetic_root, tmp_path):
    from clamp.lightning.module import NonFiniteLossError

    with pytest.raises(NonFiniteLossError) as info:
        train_run(
            synthetic_root,
            tmp_path,
            "trainer.max_epochs=20",
            "optimizer.lr=1e6",
            "scheduler.warmup_iters=1",
            "trainer.check_val_every_n_epoch=100",
        )
    message = str(info.value)
    assert "non-finite loss at step" in message and "loss_pred=" in message and "batch images [" in message
    last = tmp_path / "checkpoints" / "last.ckpt"
    if "No checkpoint was saved yet" in message:
        assert not last.is_file()
    else:
        assert f"holds the state after step {read_checkpoint(last)['global_step']} " in message


def test_non_finite_steps_can_be_skipped_and_counted(synthetic_root, tmp_path, caplog, monkeypatch):
    import clamp.lightning.module as module

    real_loss = module.clamp_total_loss

    def sometimes_nan(output, batch, **kwargs):
        terms = real_loss(output, batch, **kwargs)
        if int(batch["image_id"][0]) % 3 == 0:  # a few batches go wrong
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(module, "clamp_total_loss", sometimes_nan)
    with caplog.at_level("WARNING"):
        train_run(synthetic_root, tmp_path, "trainer.max_epochs=1", "loss.on_nonfinite=skip")
    skipped = [r for r in caplog.records if "skipped a step with a non-finite loss" in r.getMessage()]
    assert skipped and "(1 skipped so far)" in skipped[0].getMessage()
    weights = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


# ---- console -----------------------------------------------------------------------------------------
def test_the_console_shows_progress_lines_and_results_without_library_noise(synthetic_root, tmp_path):
    overrides = [
        o
        for o in fast_overrides(
            synthetic_root,
            tmp_path,
            "trainer.max_epochs=2",
            "test_after_fit=true",
            "trainer.limit_train_batches=2",
            "trainer.limit_test_batches=2",
        )
        if not o.startswith("callbacks.rich_progress_bar")
    ]
    result = run_cli("-m", "clamp.train", *overrides, bare_interpreter=True)  # the noise of a first import too
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout and "AP50" in result.stdout
    for noise in ("GPU available", "Tip:", "litlogger", "LeafSpec", "srun", "eval mode", "FLOPs", "Warning"):
        assert noise not in output, noise


@pytest.fixture(scope="module")
def resumed_mid_epoch(synthetic_root, tmp_path_factory) -> dict:
    """A run stopped by SIGTERM 2 batches into epoch 2 of 3 (4 batches each, validated every other epoch), then
    resumed: its stop message, what each part printed, the warnings of the resume and its wall time."""
    import contextlib
    import io
    import warnings

    import lightning as L

    from clamp.lightning.checkpointing import Preempted

    class SignalAtStep(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 5:  # the second step of epoch 2
                signal.raise_signal(signal.SIGTERM)

    run = tmp_path_factory.mktemp("resumed-mid-epoch")
    settings = (*RESUME, "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2")
    first, resumed = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(first):
        add_callback(patch, SignalAtStep())
        with pytest.raises(Preempted) as stopped:
            train_run(synthetic_root, run, *settings)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(resumed):
        warnings.simplefilter("always")
        started = time.monotonic()
        train_run(synthetic_root, run, *settings)
        wall = time.monotonic() - started
    return {
        "stopped": str(stopped.value),
        "first": first.getvalue().splitlines(),
        "resumed": resumed.getvalue().splitlines(),
        "warnings": [str(w.message) for w in caught],
        "wall": wall,
    }


def epoch_line(lines: list[str], label: str) -> str:
    (line,) = [line for line in lines if line.startswith(f"{label}  ")]
    return line


def test_an_exact_mid_epoch_resume_is_not_called_unreliable(resumed_mid_epoch):
    assert not [w for w in resumed_mid_epoch["warnings"] if "not resumable" in w or "unreliable" in w]


def test_the_epoch_resumed_in_its_middle_is_timed_from_the_resume(resumed_mid_epoch):
    line = epoch_line(resumed_mid_epoch["resumed"], "epoch 2/3")
    seconds = float(line.split("  ")[-1].split(" s")[0])
    assert seconds <= resumed_mid_epoch["wall"] and line.endswith(" s since the resume at step 6"), line
    assert not epoch_line(resumed_mid_epoch["resumed"], "epoch 3/3").endswith("resume at step 6")


def test_epoch_lines_show_val_ap_only_for_epochs_that_were_validated(resumed_mid_epoch):
    lines = resumed_mid_epoch["first"] + resumed_mid_epoch["resumed"]
    assert "val/AP" in epoch_line(lines, "epoch 2/3")  # validated every other epoch
    assert "val/AP" not in epoch_line(lines, "epoch 1/3") and "val/AP" not in epoch_line(lines, "epoch 3/3")


def test_a_stop_message_says_where_in_which_epoch_as_the_epoch_lines_count(resumed_mid_epoch):
    assert "stopped by SIGTERM at step 6 (2 of 4 batches into epoch 2/3); saved " in resumed_mid_epoch["stopped"]


def test_the_terminal_bar_counts_epochs_as_the_lines_do_without_logger_version(synthetic_root, tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar

    from clamp.train import build_trainer

    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    overrides = fast_overrides(synthetic_root, tmp_path, "trainer.max_epochs=4", "callbacks.rich_progress_bar=true")
    trainer = build_trainer(compose_train(overrides), tmp_path)
    (bar,) = [cb for cb in trainer.callbacks if isinstance(cb, RichProgressBar)]
    bar.setup(trainer, None, "fit")
    assert bar._get_train_description(0).strip() == "Epoch 1/4"
    assert bar._get_train_description(3).strip() == "Epoch 4/4"
    assert "v_num" not in bar.get_metrics(trainer, None)


def test_the_run_log_file_keeps_clamp_debug_lines_and_no_library_debug(synthetic_root, tmp_path):
    import re

    run = tmp_path / "run"
    overrides = fast_overrides(synthetic_root, run, "trainer.limit_train_batches=2")
    result = run_cli("-m", "clamp.train", *overrides, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    records = re.findall(r"^\[[^]]*\]\[([^]]+)\]\[(\w+)\]", (run / "train.log").read_text(), flags=re.MULTILINE)
    debug = {name for name, level in records if level == "DEBUG"}
    assert any(name.startswith("clamp.") for name in debug), records
    assert {name for name in debug if not name.startswith("clamp.")} == set()


@pytest.mark.slow
def test_two_process_ddp_trains_and_evaluates_like_one_process(synthetic_root, tmp_path):
    overrides = [
        o
        for o in fast_overrides(
            synthetic_root,
            tmp_path,
            "trainer.max_epochs=1",
            "data.batch_size=8",
            "trainer.limit_train_batches=4",
            "test_after_fit=true",
        )
        if not o.startswith("paths.output_dir")
    ]
    ddp = ("trainer.devices=2", "+trainer.strategy=ddp")
    trained = run_cli("-m", "clamp.train", *overrides, *ddp, f"hydra.run.dir={tmp_path / 'run'}", timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.count("test metrics") == 1 and trained.stdout.count("split mode=") == 1
    assert "sync_dist" not in trained.stderr and "Warning" not in trained.stderr
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    reports = []
    for name, extra in (("one", ()), ("two", ("trainer.devices=2", "+trainer.strategy=ddp"))):
        result = run_cli(
            "-m",
            "clamp.eval",
            f"ckpt={ckpt}",
            "trainer.accelerator=cpu",
            *extra,
            f"hydra.run.dir={tmp_path / name}",
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        reports.append(
            (
                json.loads((tmp_path / name / "metrics.json").read_text()),
                json.loads((tmp_path / name / "results.json").read_text()),
            )
        )
    (one, one_results), (two, two_results) = reports
    test_instances = json.loads((tmp_path / "one" / "split_manifest.json").read_text())["parts"]["test"]
    assert len(one_results) == len(two_results) == test_instances["num_instances"]  # padding repeats dropped
    assert sorted(r["image_id"] for r in one_results) == sorted(r["image_id"] for r in two_results)
    # Other batch compositions may flip the argmax of a near-flat (untrained) heatmap, nothing more.
    a = np.array(sorted(r["keypoints"] for r in one_results))
    b = np.array(sorted(r["keypoints"] for r in two_results))
    assert (np.abs(a - b) < 1e-3).mean() > 0.95
    assert {k: one[k] for k in ("AP", "AP50", "AR")} == pytest.approx({k: two[k] for k in ("AP", "AP50", "AR")})
