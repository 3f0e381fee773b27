"""The README's "When things go wrong" table, row by row: every user error it lists, run as a user runs it,
exits 2 with one line on stderr and no traceback ("Every user error is one line ... no traceback")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, fast_overrides, run_cli


def readme_rows() -> list[str]:
    """The first cell of every row of the README's "When things go wrong" table."""
    section = (REPO_ROOT / "README.md").read_text().split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what happens")]
    return [row.split(" | ")[0].removeprefix("| ").strip() for row in rows if not set(row) <= set("|- ")]


# Rows that are not user errors: what a run does when it is stopped, crashes or is distributed.
NOT_USER_ERRORS = (
    "pre-emption (SIGTERM)",
    "a crash or a kill mid-write",
    "`last.ckpt`",
    "truncated or undecodable image found during training",  # skipped and counted, not an error
    "DDP",
)


@dataclass
class Files:
    """What the cases point at: the session's data and checkpoint, and this test's own folder."""

    data: Path
    ckpt: Path
    tmp: Path

    def train(self, *extra: str) -> list[str]:
        return ["-m", "clamp.train", *fast_overrides(self.data, self.tmp / "run", *extra)]

    def garbage(self) -> Path:
        path = self.tmp / "garbage.ckpt"
        path.write_bytes(b"this is not a checkpoint" * 100)
        return path

    def empty_val(self) -> Path:
        val = json.loads((self.data / "annotations" / "ap10k-val-split1.json").read_text())
        for record in val["annotations"]:
            record["keypoints"], record["num_keypoints"] = [0] * 51, 0
        path = self.tmp / "empty-val.json"
        path.write_text(json.dumps(val))
        return path

    def poisoned(self) -> Path:
        from tests.test_security import poisoned_checkpoint

        return poisoned_checkpoint(self.ckpt, self.tmp)[0]

    def not_synthetic(self) -> Path:
        (self.tmp / "ap-10k" / "annotations").mkdir(parents=True)
        return self.tmp / "ap-10k"


def photo(files: Files) -> str:
    return f"input={files.data / 'data' / '000000000001.jpg'}"


# README row (the start of its first cell) -> cases: (name, argv, env, words the one line must hold).
Case = tuple[str, Callable[[Files], list[str]], dict[str, str], str]
CASES: dict[str, list[Case]] = {
    "missing dataset, annotation file or CLIP weights": [
        ("dataset", lambda f: f.train(f"data.root={f.tmp / 'nowhere'}"), {}, "annotation file not found"),
        (
            "annotation_file",
            lambda f: f.train("data.splits.val.ann=annotations/ap10k-val-split9.json"),
            {},
            "ap10k-val-split9.json",
        ),
        ("clip_weights", lambda f: f.train(f"backbone.pretrained={f.tmp / 'RN50.pt'}"), {}, "RN50.pt"),
        (
            "eval_data_root",
            lambda f: ["-m", "clamp.eval", f"ckpt={f.ckpt}", f"data.root={f.tmp}", f"hydra.run.dir={f.tmp / 'e'}"],
            {},
            "annotation file not found",
        ),
    ],
    "`clamp.synthetic --out DIR` on a folder": [
        ("synthetic", lambda f: ["-m", "clamp.synthetic", "--out", str(f.not_synthetic())], {}, "refusing to overwrite")
    ],
    "missing, non-image, or wrong-size images": [
        ("missing_images", lambda f: f.train("data.splits.train.images=annotations"), {}, "not found"),
    ],
    "empty training or validation set": [
        ("empty_val", lambda f: f.train(f"data.splits.val.ann={f.empty_val()}"), {}, "the val set is empty"),
    ],
    "missing, truncated, garbage or state-dict-only checkpoint": [
        ("eval", lambda f: ["-m", "clamp.eval", f"ckpt={f.garbage()}", f"hydra.run.dir={f.tmp / 'e'}"], {}, "garbage"),
        (
            "predict",
            lambda f: ["-m", "clamp.predict", f"ckpt={f.garbage()}", photo(f), f"hydra.run.dir={f.tmp / 'p'}"],
            {},
            "garbage",
        ),
        (
            "export",
            lambda f: ["-m", "clamp.export", f"ckpt={f.garbage()}", f"out={f.tmp / 'x'}", f"hydra.run.dir={f.tmp}"],
            {},
            "garbage",
        ),
        ("resume", lambda f: f.train(f"ckpt_path={f.garbage()}"), {}, "garbage"),
        ("missing", lambda f: f.train(f"ckpt_path={f.tmp / 'nowhere.ckpt'}"), {}, "nowhere.ckpt"),
        ("another_model", lambda f: f.train(f"ckpt_path={f.ckpt}", "model=simplebaseline"), {}, "another network"),
        (
            "another_keypoint_set",
            lambda f: ["-m", "clamp.eval", f"ckpt={f.ckpt}", "data.keypoints=animalpose", f"hydra.run.dir={f.tmp}"],
            {},
            "animalpose",
        ),
    ],
    "an `hf-hub:` model that is not in the local Hub cache": [
        (
            "hub_offline",
            lambda f: ["-m", "clamp.predict", "ckpt=hf-hub:lab/absent", photo(f), f"hydra.run.dir={f.tmp / 'p'}"],
            {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "{tmp}/hub-cache"},
            "hf-hub:lab/absent: clamp_model.json is not in the local Hub cache",
        ),
    ],
    "a checkpoint that needs code to unpickle": [
        (
            "payload",
            lambda f: ["-m", "clamp.eval", f"ckpt={f.poisoned()}", f"hydra.run.dir={f.tmp / 'e'}"],
            {},
            "refused to load",
        ),
    ],
    "non-finite loss": [
        (
            "nan",
            lambda f: f.train("trainer.max_epochs=20", "optimizer.lr=1e6", "scheduler.warmup_iters=1"),
            {},
            "non-finite loss at step",
        ),
    ],
    "misspelt config key, group option, family or species": [
        ("key", lambda f: ["-m", "clamp.train", "trainer.max_epoch=1"], {}, "did you mean trainer.max_epochs"),
        ("option", lambda f: ["-m", "clamp.train", "backbone=rn5"], {}, "did you mean rn50"),
        (
            "family",
            lambda f: f.train("split=bovidae_canidae", "split.train_family=Bovidea"),
            {},
            "did you mean Bovidae",
        ),
        ("species", lambda f: f.train("split=bovidae_canidae", "split.train_family=dog"), {}, "is a species"),
    ],
    "`logger=wandb` without an API key": [
        (
            "wandb",
            lambda f: f.train("logger=wandb"),
            {"WANDB_MODE": "online", "WANDB_API_KEY": "", "HOME": "{tmp}", "NETRC": "{tmp}/none"},
            "wandb login",
        ),
    ],
    "a table experiment without `-m`": [
        ("table", lambda f: ["-m", "clamp.train", "+experiment=table1"], {}, "run it as a multirun with -m"),
    ],
    "a hyperparameter search without `-m`": [
        (
            "search_without_m",
            lambda f: ["-m", "clamp.train", "+experiment=fewshot20", "+hparams_search=clamp_fewshot"],
            {},
            "runs as a multirun: add -m",
        ),
        (
            "optuna_alone",
            lambda f: ["-m", "clamp.train", "-m", "+experiment=fewshot20", "hydra/sweeper=optuna"],
            {},
            "+hparams_search=clamp_fewshot",
        ),
    ],
}


def test_every_row_of_the_readme_table_is_checked_here_or_is_not_a_user_error():
    rows = readme_rows()
    assert len(rows) >= 10
    unmatched = [row for row in rows if not row.startswith((*CASES, *NOT_USER_ERRORS))]
    assert not unmatched, f"README rows without a case here: {unmatched}"
    stale = [key for key in (*CASES, *NOT_USER_ERRORS) if not any(row.startswith(key) for row in rows)]
    assert not stale, f"cases for rows the README no longer has: {stale}"


@pytest.mark.parametrize(
    ("row", "name"), [(row, case[0]) for row, cases in CASES.items() for case in cases], ids=lambda v: v[:30]
)
def test_a_readme_user_error_is_one_line_exit_2_and_no_traceback(row, name, synthetic_root, trained_run, tmp_path):
    (_, argv, env, words) = next(case for case in CASES[row] if case[0] == name)
    files = Files(synthetic_root, trained_run / "checkpoints" / "last.ckpt", tmp_path)
    environment = {key: value.replace("{tmp}", str(tmp_path)) for key, value in env.items()}
    result = run_cli(*argv(files), env=environment, timeout=240)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(re.escape(words), lines[0]), (words, lines[0])
