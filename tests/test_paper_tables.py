"""The paper's tables as package data: transcribed as the paper prints them, loaded with checks, tied to our
configs, and printed by ``python -m clamp.tables`` in Markdown, CSV and LaTeX."""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from clamp.tables import PaperTableError, load_paper_tables, parse_paper_tables, render_table
from clamp.tables.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"
TABLES = load_paper_tables()
FORMATS = ("md", "csv", "latex")
# How the paper prints what the structured fields of a row say.
PRINTED_BACKBONES = {"ResNet-50": "resnet50", "ViT-Base": "vitb16", "ViT-Large": "vitl14"}
PRINTED_PRETRAINS = {"ImageNet": "imagenet", "CLIP": "clip"}
PRINTED_METHODS = {"SimpleBaseline [32]": "simplebaseline", "CLAMP (ours)": "clamp"}
PRINTED_MARKS = {"✓": True, "✕": False}
# Our backbone config for each (backbone, pre-training) of the paper.
BACKBONE_CONFIGS = {
    ("resnet50", "imagenet"): "rn50_imagenet",
    ("resnet50", "clip"): "rn50",
    ("vitb16", "clip"): "vitb16",
    ("vitl14", "clip"): "vitl14",
}


@pytest.fixture(scope="module")
def paper_lines() -> list[str]:
    """The paper's text, one string per line, from ``$CLAMP_PAPER`` or ``<repo>/../shared/docs``."""
    path = Path(os.environ.get("CLAMP_PAPER", REPO_ROOT.parent / "shared" / "docs" / "clamp_paper.txt"))
    if not path.is_file():
        pytest.skip(f"paper text not found at {path} (set CLAMP_PAPER to clamp_paper.txt)")
    return path.read_text(encoding="utf-8").splitlines()


def raw_data() -> dict:
    return json.loads(files("clamp.tables").joinpath("paper_tables.json").read_text(encoding="utf-8"))


@functools.cache  # several tables name the same method; composing takes 0.25-0.5 s
def method_config(name: str) -> dict:
    """The config a conf/method row composes to (as Hydra resolves it), its group choices under 'choices'
    (read-only: it is shared)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+method={name}"], return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    return {
        "choices": choices,
        "loss": OmegaConf.to_container(cfg.loss),
        "model": {"overrides": OmegaConf.to_container(cfg.model.overrides)},
    }


@functools.cache
def experiment_choice(name: str, group: str) -> str | None:
    """The option the composed experiment picks for a config group (as Hydra resolves the defaults)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+experiment={name}"], return_hydra_config=True)
    return cfg.hydra.runtime.choices.get(group)


def nested(config: dict, dotted: str, default):
    for key in dotted.split("."):
        config = config.get(key, {}) if isinstance(config, dict) else {}
    return default if config == {} else config


@pytest.mark.parametrize("number", sorted(TABLES))
def test_every_row_reads_as_its_line_in_the_paper_text(paper_lines, number):
    table = TABLES[number]
    start = next(i for i, line in enumerate(paper_lines) if line.startswith(f"Table {number}. "))
    caption_lines = paper_lines[start : paper_lines.index("", start)]
    assert " ".join(caption_lines) == table.caption
    # The header line (it also proves the column names) is the nearest one above the caption.
    header = " ".join(table.header)
    top = max(i for i, line in enumerate(paper_lines[:start]) if line == header)
    printed_rows = [line for line in paper_lines[top + 1 : start] if line.strip()]
    # The text extraction turned the paper's check marks into '!'.
    ours = [" ".join(cells).replace("✓", "!") for cells in table.cells()]
    assert ours == printed_rows


def test_every_table_of_the_paper_is_there_with_a_value_or_null_for_every_column():
    assert sorted(TABLES) == list(range(1, 12))
    for table in TABLES.values():
        assert table.rows and table.columns
        for row in table.rows:
            assert tuple(row.values) == table.columns, (table.number, row.printed)
            assert tuple(row.printed) == table.label_columns, (table.number, row.printed)
            assert all(value is None or isinstance(value, int | float) for value in row.values.values())


def test_a_row_without_a_value_for_a_column_is_rejected_with_a_clear_error():
    data = raw_data()
    del data["tables"][0]["rows"][2]["values"]["AR"]
    with pytest.raises(PaperTableError, match=r"Table 1, row 3: 'values': no value .*null.* \['AR'\]"):
        parse_paper_tables(data)


@pytest.mark.parametrize(
    "mistake",
    ["unknown_row_key", "text_value", "bool_value", "bad_pretrain", "duplicate_table", "fraction_of_unknown_column"],
)
def test_malformed_data_is_rejected(mistake):
    data = raw_data()
    row = data["tables"][0]["rows"][0]
    if mistake == "unknown_row_key":
        row["backbon"] = row.pop("backbone")
    elif mistake == "text_value":
        row["values"]["AP"] = "70.2"
    elif mistake == "bool_value":
        row["values"]["AP"] = True
    elif mistake == "bad_pretrain":
        row["pretrain"] = "CLIP"
    elif mistake == "duplicate_table":
        data["tables"].append(copy.deepcopy(data["tables"][0]))
    else:
        data["tables"][10]["fractions"]["AP@20%"] = 0.2
    with pytest.raises(PaperTableError, match=r"Table (1|11)"):
        parse_paper_tables(data)


def test_a_cell_the_paper_leaves_empty_loads_as_none_and_prints_empty():
    data = raw_data()
    data["tables"][0]["rows"][0]["values"]["APM"] = None
    table = parse_paper_tables(data)[1]
    assert table.rows[0].values["APM"] is None
    assert table.cells()[0] == [
        "SimpleBaseline [32]",
        "ResNet-50",
        "ImageNet",
        "70.2",
        "94.2",
        "76.0",
        "",
        "70.4",
        "73.5",
    ]


def test_rows_the_paper_repeats_across_tables_agree():
    # Tables 1, 5-9 on AP-10K all come from the supervised protocol, so a config row has one value per column.
    seen: dict[tuple, tuple[int, float]] = {}
    repeats = 0
    for table in TABLES.values():
        if table.dataset != "ap10k" or table.setting in ("fewshot20", "zeroshot"):
            continue
        for row in (r for r in table.rows if r.row is not None):
            for column, value in row.values.items():
                first = seen.setdefault((row.row, column), (table.number, value))
                repeats += first[0] != table.number
                assert value == first[1], (
                    f"{row.row.method} {column}: Table {table.number} {value}, Table {first[0]} {first[1]}"
                )
    # Table 5: 2 CLAMP APs of Table 1; Table 6: AP, AR of 2 rows; Table 7: 4 APs; Table 8: 2 APs; Table 9: 1 AP.
    assert repeats == 13


def test_row_keys_name_real_method_and_split_files():
    for table in TABLES.values():
        for row in (r for r in table.rows if r.row is not None):
            assert (CONF / "method" / f"{row.row.method}.yaml").is_file(), row.row
            if row.row.split is not None:
                split = yaml.safe_load((CONF / "split" / f"{row.row.split}.yaml").read_text())
                assert (split["train_family"], split["test_family"]) == (row.train_family, row.test_family)
            else:
                assert row.train_family is None and row.test_family is None


def test_only_other_published_methods_have_no_config_row():
    unmatched = [(table.number, row.method) for table in TABLES.values() for row in table.rows if row.row is None]
    assert {number for number, _ in unmatched} == {5}
    assert "clamp" not in {method for _, method in unmatched}


def test_structured_fields_agree_with_the_printed_cells():
    for table in TABLES.values():
        for row in table.rows:
            printed = row.printed
            if "Method" in printed and printed["Method"] in PRINTED_METHODS:
                assert PRINTED_METHODS[printed["Method"]] == row.method, printed
            if "Backbone" in printed:
                assert PRINTED_BACKBONES[printed["Backbone"]] == row.backbone, printed
            if "Pre-train" in printed:
                assert PRINTED_PRETRAINS[printed["Pre-train"]] == row.pretrain, printed
            if "Train" in printed:
                assert (printed["Train"], printed["Test"]) == (row.train_family, row.test_family)
    switches = [(r.spatial, r.feature, r.prompt_encoder) for r in TABLES[6].rows]
    assert switches == [tuple(PRINTED_MARKS[r.printed[c]] for c in TABLES[6].label_columns) for r in TABLES[6].rows]


def test_structured_fields_agree_with_the_method_files_they_name():
    for table in TABLES.values():
        for row in (r for r in table.rows if r.row is not None):
            config = method_config(row.row.method)
            assert config["choices"]["model"] == row.method, row.row
            assert config["choices"]["backbone"] == BACKBONE_CONFIGS[row.backbone, row.pretrain], row.row
    for row in TABLES[6].rows:
        config = method_config(row.row.method)
        is_clamp = config["choices"]["model"] == "clamp"
        assert row.spatial == is_clamp
        assert row.feature == (is_clamp and nested(config, "loss.use_feature", True))
        assert row.prompt_encoder == (is_clamp and nested(config, "model.overrides.use_prompt_encoder", True))
    for row in TABLES[8].rows:
        config = method_config(row.row.method)
        expected = nested(config, "model.overrides.prompt_source", "text") if row.method == "clamp" else None
        assert row.prompt_source == expected


@pytest.mark.parametrize("number", [n for n, t in sorted(TABLES.items()) if t.experiment])
def test_each_table_experiment_sweeps_exactly_the_rows_of_its_table(number):
    table = TABLES[number]
    experiment = yaml.safe_load((CONF / "experiment" / f"{table.experiment}.yaml").read_text())
    params = experiment["hydra"]["sweeper"]["params"]
    sweep = {key: str(values).split(",") for key, values in params.items()}
    if "+method" in sweep:
        assert sweep["+method"] == [row.row.method for row in table.rows]
        return
    assert set(sweep["model"]) == {method_config(row.row.method)["choices"]["model"] for row in table.rows}
    backbone = experiment_choice(table.experiment, "backbone")
    assert {method_config(row.row.method)["choices"]["backbone"] for row in table.rows} == {backbone}
    if "split" in sweep:
        assert set(sweep["split"]) == {row.row.split for row in table.rows}
    if "split.fraction" in sweep:
        assert [float(f) for f in sweep["split.fraction"]] == list(table.fractions.values())
        assert list(table.fractions) == list(table.columns)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("number", sorted(TABLES))
def test_cli_prints_every_table_in_every_format(capsys, number, fmt):
    table = TABLES[number]
    assert main(["--paper", str(number), "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "csv":
        assert list(csv.reader(io.StringIO(out))) == [list(table.header), *table.cells()]
    elif fmt == "md":
        lines = out.splitlines()
        assert len(lines) == len(table.rows) + 4  # header, rule, rows, blank line, caption
        assert lines[-1] == table.caption.replace("*", "\\*")
        cells = [[cell.strip() for cell in line[1:-1].split(" | ")] for line in [lines[0], *lines[2:-2]]]
        assert cells == [[cell.replace("*", "\\*") for cell in line] for line in [table.header, *table.cells()]]
    else:
        assert out.count(r" \\" + "\n") == len(table.rows) + 1
        assert r"\toprule" in out and r"\bottomrule" in out and r"\caption{" in out
        assert f"Table {number}." not in out  # LaTeX numbers the float itself


def test_cli_writes_the_table_to_a_file(tmp_path, capsys):
    assert main(["--paper", "3", "--format", "csv"]) == 0
    on_console = capsys.readouterr().out
    out = tmp_path / "table3.csv"
    assert main(["--paper", "3", "--format", "csv", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == on_console
    assert capsys.readouterr().out == f"Wrote {out}\n"


@pytest.mark.parametrize("number", ["0", "12"])
def test_cli_rejects_an_unknown_table_with_exit_2_and_one_line(number):
    proc = subprocess.run(
        [sys.executable, "-m", "clamp.tables", "--paper", number],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"error: the paper has no Table {number}; it has Tables 1 to 11\n"


def test_loading_the_tables_imports_neither_torch_nor_lightning():
    code = (
        "import sys, clamp.tables; clamp.tables.load_paper_tables(); "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert proc.stdout == "[]\n"


def test_latex_escapes_its_special_characters():
    out = render_table(
        ["a_b", "AP@1%"], [["x & y", "[32] 50%"], ["✓ ✕", "−0.8 $#{}"]], "latex", caption="k% of ~data^2 \\ end"
    )
    assert r"a\_b & AP@1\% \\" in out
    assert r"x \& y & {[}32] 50\% \\" in out  # a leading [ would be an optional argument of \\
    assert r"\checkmark{} $\times$ & $-$0.8 \$\#\{\} \\" in out
    assert r"\caption{k\% of \textasciitilde{}data\textasciicircum{}2 \textbackslash{} end}" in out
    assert r"\begin{tabular}{ll}" in out  # the second column has text cells, so it stays left-aligned


def test_paper_tables_in_latex_escape_percent_signs_and_marks(capsys):
    main(["--paper", "11", "--format", "latex"])
    out = capsys.readouterr().out
    assert r"AP@1\% & AP@2\%" in out and r"random k\% of COCO" in out
    assert r"\begin{tabular}{lllrrrrr}" in out
    main(["--paper", "6", "--format", "latex"])
    assert r"\checkmark{} & $\times$ & $\times$ & 72.1 & 75.3 \\" in capsys.readouterr().out


def test_csv_quotes_cells_with_commas_and_quotes():
    rows = [["72.1 (72.9, −0.8)", 'the "w/o" row'], ["1", "2"]]
    out = render_table(["AP", "note"], rows, "csv", caption="ignored")
    assert out.splitlines() == ["AP,note", '"72.1 (72.9, −0.8)","the ""w/o"" row"', "1,2"]
    assert list(csv.reader(io.StringIO(out))) == [["AP", "note"], *rows]


def test_markdown_escapes_pipes_and_emphasis_and_right_aligns_numbers():
    out = render_table(["Method", "AP"], [["a|b *c* d_e", "72.1 (72.9, −0.8)"], ["x", ""]], "md")
    header, rule, first, second = out.splitlines()
    assert header.startswith("| Method ") and header.endswith(" AP |")
    assert first.startswith(r"| a\|b \*c\* d\_e |")
    assert rule.endswith(":|") and not rule.startswith("|:")
    assert second.endswith("|                   |")  # an empty cell stays empty


def test_render_rejects_an_unknown_format_and_ragged_rows():
    with pytest.raises(ValueError, match="unknown table format 'html'"):
        render_table(["a"], [["1"]], "html")
    with pytest.raises(ValueError, match="row 2 has 1 cells for 2 columns"):
        render_table(["a", "b"], [["1", "2"], ["3"]], "md")
