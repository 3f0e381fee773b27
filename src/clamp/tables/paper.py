"""The paper's Tables 1-11, read from the package data file ``paper_tables.json`` and checked.

The JSON file is the one place where the paper's numbers are written down. Each row keeps its
label cells exactly as printed (``printed``), its numbers (``values``, ``null`` for an empty cell)
and structured fields that say what the row is (method, backbone, pre-training, zero-shot
families, ablation switches) and which of our config rows reproduces it (``row``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from importlib.resources import files
from types import MappingProxyType
from typing import Any

DATA_FILE = "paper_tables.json"
DATASETS = ("ap10k", "animalpose", "coco")
PRETRAINS = ("imagenet", "clip")
Value = float | int | None


class PaperTableError(ValueError):
    """The paper-table data does not have the shape the loader expects."""


@dataclass(frozen=True)
class ConfigRow:
    """Our run of a paper row: a ``conf/method/`` file and, for zero-shot rows, a ``conf/split/`` file."""

    method: str
    split: str | None = None


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table."""

    printed: Mapping[str, str]  # label column -> the cell as printed in the paper
    values: Mapping[str, Value]  # number column -> value, None where the paper leaves the cell empty
    method: str  # simplebaseline, clamp, or the name of another published method (Table 5)
    backbone: str | None  # resnet50, vitb16, vitl14, or another method's own network
    pretrain: str | None  # imagenet, clip, or None where the paper does not say
    row: ConfigRow | None  # None where we have no config for the row (other methods of Table 5)
    train_family: str | None = None  # zero-shot rows (Tables 3, 10)
    test_family: str | None = None
    spatial: bool | None = None  # Table 6 switches: L_spatial, L_feature, prompt encoder
    feature: bool | None = None
    prompt_encoder: bool | None = None
    prompt_source: str | None = None  # Table 8: "text", "learned_matrix", None without prompts
    note: str | None = None  # what the paper leaves unsaid about the row


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: its caption, its label and number columns and its rows, in order."""

    number: int
    title: str
    dataset: str
    setting: str
    experiment: str | None  # the conf/experiment file that runs the table's rows, if one does
    label_columns: tuple[str, ...]
    columns: tuple[str, ...]
    rows: tuple[PaperRow, ...]
    fractions: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # Table 11
    note: str | None = None

    @property
    def caption(self) -> str:
        """The caption as the paper prints it, e.g. ``Table 1. Performance comparison on AP-10K [38].``"""
        return f"Table {self.number}. {self.title}"

    @property
    def header(self) -> tuple[str, ...]:
        """All column names, label columns first, as in the paper."""
        return self.label_columns + self.columns

    def cells(self) -> list[list[str]]:
        """Every row as strings in header order; numbers as transcribed, empty cells empty."""
        return [
            [row.printed[name] for name in self.label_columns]
            + [format_value(row.values[name]) for name in self.columns]
            for row in self.rows
        ]


def format_value(value: Value) -> str:
    """A paper number as the paper prints it."""
    # The paper prints one decimal (or whole numbers for Table 7's parameters); str() of the
    # transcribed JSON number gives back exactly those digits.
    return "" if value is None else str(value)


def load_paper_tables() -> dict[int, PaperTable]:
    """All tables of the paper by number, read from the package data and checked."""
    text = files("clamp.tables").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_paper_tables(json.loads(text))


def parse_paper_tables(data: dict[str, Any]) -> dict[int, PaperTable]:
    """Check the decoded ``paper_tables.json`` and build its tables; a clear PaperTableError otherwise."""
    top = _keys(data, DATA_FILE, required={"source", "tables"})
    tables: dict[int, PaperTable] = {}
    for position, raw in enumerate(_typed(top["tables"], list, f"{DATA_FILE}: 'tables'"), start=1):
        table = _parse_table(raw, f"{DATA_FILE}: table entry {position}")
        if table.number in tables:
            raise PaperTableError(f"{DATA_FILE}: Table {table.number} appears twice")
        tables[table.number] = table
    return tables


_TABLE_REQUIRED = {"number", "title", "dataset", "setting", "experiment", "label_columns", "columns", "rows"}
_TABLE_OPTIONAL = {"fractions", "note"}
_ROW_REQUIRED = {f.name for f in fields(PaperRow) if f.default is MISSING}
_ROW_OPTIONAL = {f.name for f in fields(PaperRow)} - _ROW_REQUIRED
_ROW_SWITCHES = ("spatial", "feature", "prompt_encoder")


def _parse_table(raw: Any, where: str) -> PaperTable:
    entry = _keys(raw, where, _TABLE_REQUIRED, _TABLE_OPTIONAL)
    number = _typed(entry["number"], int, f"{where}: 'number'")
    where = f"{DATA_FILE}: Table {number}"
    if entry["dataset"] not in DATASETS:
        raise PaperTableError(f"{where}: dataset must be one of {DATASETS}, got {entry['dataset']!r}")
    label_columns = _names(entry["label_columns"], f"{where}: 'label_columns'")
    columns = _names(entry["columns"], f"{where}: 'columns'")
    if not columns or set(label_columns) & set(columns):
        raise PaperTableError(f"{where}: needs number columns, none of them also a label column")
    fractions = dict(_typed(entry.get("fractions", {}), dict, f"{where}: 'fractions'"))
    if not set(fractions) <= set(columns) or not all(0 < (_number(f) or 0) <= 1 for f in fractions.values()):
        raise PaperTableError(f"{where}: 'fractions' must map some of its columns to a fraction in (0, 1]")
    raw_rows = _typed(entry["rows"], list, f"{where}: 'rows'")
    if not raw_rows:
        raise PaperTableError(f"{where}: has no rows")
    return PaperTable(
        number=number,
        title=_typed(entry["title"], str, f"{where}: 'title'"),
        dataset=entry["dataset"],
        setting=_typed(entry["setting"], str, f"{where}: 'setting'"),
        experiment=_optional_str(entry["experiment"], f"{where}: 'experiment'"),
        label_columns=label_columns,
        columns=columns,
        rows=tuple(
            _parse_row(row, label_columns, columns, f"{where}, row {index}")
            for index, row in enumerate(raw_rows, start=1)
        ),
        fractions=MappingProxyType(fractions),
        note=_optional_str(entry.get("note"), f"{where}: 'note'"),
    )


def _parse_row(raw: Any, label_columns: tuple[str, ...], columns: tuple[str, ...], where: str) -> PaperRow:
    entry = _keys(raw, where, _ROW_REQUIRED, _ROW_OPTIONAL)
    printed = _typed(entry["printed"], dict, f"{where}: 'printed'")
    _same_columns(printed, label_columns, f"{where}: 'printed'", "no printed cell for")
    if not all(isinstance(cell, str) for cell in printed.values()):
        raise PaperTableError(f"{where}: printed cells must be strings")
    values = _typed(entry["values"], dict, f"{where}: 'values'")
    _same_columns(values, columns, f"{where}: 'values'", "no value (use null for a cell the paper leaves empty) for")
    for name, value in values.items():
        if value is not None and _number(value) is None:
            raise PaperTableError(f"{where}: value of column {name!r} must be a number or null, got {value!r}")
    if entry["pretrain"] not in (*PRETRAINS, None):
        raise PaperTableError(f"{where}: pretrain must be one of {PRETRAINS} or null, got {entry['pretrain']!r}")
    for switch in _ROW_SWITCHES:
        if not isinstance(entry.get(switch), bool | None):
            raise PaperTableError(f"{where}: {switch!r} must be true, false or absent")

    def text(name: str) -> str | None:
        return _optional_str(entry.get(name), f"{where}: {name!r}")

    return PaperRow(
        printed=MappingProxyType(dict(printed)),
        values=MappingProxyType(dict(values)),
        method=_typed(entry["method"], str, f"{where}: 'method'"),
        backbone=text("backbone"),
        pretrain=entry["pretrain"],
        row=_parse_config_row(entry["row"], f"{where}: 'row'"),
        train_family=text("train_family"),
        test_family=text("test_family"),
        spatial=entry.get("spatial"),
        feature=entry.get("feature"),
        prompt_encoder=entry.get("prompt_encoder"),
        prompt_source=text("prompt_source"),
        note=text("note"),
    )


def _parse_config_row(raw: Any, where: str) -> ConfigRow | None:
    if raw is None:
        return None
    entry = _keys(raw, where, required={"method"}, optional={"split"})
    return ConfigRow(
        method=_typed(entry["method"], str, f"{where}: 'method'"),
        split=_optional_str(entry.get("split"), f"{where}: 'split'"),
    )


def _keys(raw: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    entry = _typed(raw, dict, where)
    allowed = set(required) | set(optional)
    missing, unknown = set(required) - set(entry), set(entry) - allowed
    if missing:
        raise PaperTableError(f"{where}: missing {sorted(missing)}")
    if unknown:
        raise PaperTableError(f"{where}: unknown {sorted(unknown)} (expected some of {sorted(allowed)})")
    return entry


def _number(raw: Any) -> float | int | None:
    # bool is an int in Python, but true/false is no table value.
    return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def _same_columns(cells: dict[str, Any], columns: tuple[str, ...], where: str, missing_text: str) -> None:
    missing, unknown = [c for c in columns if c not in cells], sorted(set(cells) - set(columns))
    if missing:
        raise PaperTableError(f"{where}: {missing_text} column(s) {missing}")
    if unknown:
        raise PaperTableError(f"{where}: cells for columns the table does not have: {unknown}")


def _names(raw: Any, where: str) -> tuple[str, ...]:
    names = _typed(raw, list, where)
    if not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise PaperTableError(f"{where}: must be distinct, non-empty strings")
    return tuple(names)


def _optional_str(raw: Any, where: str) -> str | None:
    return None if raw is None else _typed(raw, str, where)


def _typed(raw: Any, kind: type, where: str) -> Any:
    if not isinstance(raw, kind) or (kind is int and isinstance(raw, bool)):
        raise PaperTableError(f"{where}: expected {kind.__name__}, got {type(raw).__name__}")
    return raw
