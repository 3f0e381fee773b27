"""Our runs laid out as the paper's tables, every cell our number beside the paper's.

A run is a folder with ``config.yaml`` (the resolved config ``clamp.train`` writes at the start) and
``metrics.json`` (the test metrics it writes at the end); a multirun folder holds one per job. Each run
is matched to a paper row by what its config says it trained (:func:`row_key`: the ``conf/method`` row
its model kind, backbone and ablation switches make, and the zero-shot split), and labelled by what
actually ran (:func:`ran`: the registered model, its starting weights, synthetic data), so a smoke run
shows up as the tiny model it is. Runs of one row (seeds) are averaged: ``mean ± std (n=...)``. Rows of
the paper without runs are shown with the paper's numbers only; runs of rows the paper lacks (your own
method) are added below it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clamp.tables.paper import PaperTable, format_value

#: The metric names of metrics.json for the paper's AP column names.
METRIC_OF_COLUMN = {"AP": "AP", "AP50": "AP50", "AP75": "AP75", "APM": "APM", "APL": "APL", "AR": "AR"}


class RunsError(ValueError):
    """Run folders that cannot be read or laid out; the message says which and why."""


@dataclass(frozen=True)
class Run:
    """One finished run: where it is, its resolved config and its test metrics."""

    path: Path
    config: Mapping[str, Any]
    metrics: Mapping[str, Any]


def _load_yaml(path: Path) -> Mapping[str, Any]:
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a mapping")
    return {str(key): value for key, value in config.items()}


def find_runs(folders: Iterable[str | Path]) -> list[Run]:
    """Every finished run in ``folders`` (run or multirun folders, searched recursively), path-sorted."""
    runs = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise RunsError(f"not a folder: {folder}")
        found = sorted({p.parent for p in folder.rglob("metrics.json") if (p.parent / "config.yaml").is_file()})
        if not found:
            raise RunsError(f"{folder} holds no finished run (a folder with config.yaml and metrics.json)")
        for run in found:
            try:
                runs.append(Run(run, _load_yaml(run / "config.yaml"), json.loads((run / "metrics.json").read_text())))
            except (OSError, ValueError) as err:
                raise RunsError(f"cannot read the run in {run}: {err}") from None
    return runs


def _get(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def row_key(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """The paper row a config trains: its ``conf/method`` name and its zero-shot split name (or None).

    The method is ``<kind>_<backbone>`` with the ablation switches as suffixes, the names of the
    ``conf/method`` files: ``_spatial_only`` (no L_feature, no prompt encoder), ``_no_prompt_encoder``,
    ``_learned_matrix``. It reads the backbone the row was configured with, so a smoke run of a row
    (which swaps in a tiny model) still belongs to that row.
    """
    kind = _get(config, "model.kind", "")
    method = f"{kind}_{_get(config, 'backbone.name', '')}"
    overrides = _get(config, "model.overrides", {}) or {}
    if kind == "clamp":
        no_encoder = overrides.get("use_prompt_encoder") is False
        if no_encoder and _get(config, "loss.use_feature") is False:
            method += "_spatial_only"
        elif no_encoder:
            method += "_no_prompt_encoder"
        if overrides.get("prompt_source") == "learned_matrix":
            method += "_learned_matrix"
    split = None
    if _get(config, "split.mode") == "family":
        split = f"{_get(config, 'split.train_family')}_{_get(config, 'split.test_family')}".lower()
    return method, split


def ran(config: Mapping[str, Any]) -> str:
    """What a run actually trained, for the row label: model, starting weights, data."""
    weights = _get(config, "model.pretrained")
    parts = [str(_get(config, "model.name", "?")), "random weights" if weights is None else Path(str(weights)).name]
    if _get(config, "data.generate") is not None:
        parts.append("synthetic data")
    # Ablation switches and departures from the recipe, not a value the backbone's config sets itself.
    backbone = _get(config, "backbone", {}) or {}
    switches = [
        f"{k}={v}"
        for k, v in sorted((_get(config, "model.overrides", {}) or {}).items())
        if k not in ("input_size", "heatmap_size") and not (k in backbone and v == backbone[k])
    ]
    return ", ".join(parts + switches)


def _cell(values: Sequence[float], paper: float | None) -> str:
    """``ours (paper, diff)``: a mean ± std (n=..) for several runs, ``—`` without runs."""
    paper_text = "" if paper is None else format_value(paper)
    if not values:
        return f"— ({paper_text})" if paper_text else "—"
    mean = statistics.fmean(values)
    ours = f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {statistics.stdev(values):.1f} (n={len(values)})"
    if paper is None:
        return ours
    return f"{ours} ({paper_text}, {mean - paper:+.1f})"


def _percent(run: Run, metric: str) -> float | None:
    value = run.metrics.get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else 100.0 * float(value)


def _column_values(table: PaperTable, runs: Sequence[Run], column: str) -> list[float]:
    """The values of one column over ``runs``: a metric, or for Table 11 the AP at the column's fraction."""
    if column in table.fractions:
        runs = [r for r in runs if math.isclose(float(_get(r.config, "split.fraction", -1)), table.fractions[column])]
        metric = "AP"
    elif column in METRIC_OF_COLUMN:
        metric = METRIC_OF_COLUMN[column]
    else:
        return []
    return [v for v in (_percent(r, metric) for r in runs) if v is not None]


def layout(table: PaperTable, runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of ``table`` with ``runs`` beside the paper (see the module docstring)."""
    by_row: dict[tuple[str, str | None], list[Run]] = defaultdict(list)
    for run in runs:
        by_row[row_key(run.config)].append(run)
    rows, used = [], set()
    for row in table.rows:
        key = (row.row.method, row.row.split) if row.row is not None else None
        matched = by_row.get(key, []) if key is not None else []
        used.add(key)
        label = [row.printed[c] for c in table.label_columns]
        described = "; ".join(sorted({ran(r.config) for r in matched})) or "—"
        rows.append(
            label + [described] + [_cell(_column_values(table, matched, c), row.values[c]) for c in table.columns]
        )
    for key, matched in sorted(by_row.items(), key=lambda item: str(item[0])):
        if key in used:
            continue
        label = [key[0] if i == 0 else (key[1] or "") if i == 1 else "" for i in range(len(table.label_columns))]
        rows.append(
            label
            + ["; ".join(sorted({ran(r.config) for r in matched}))]
            + [_cell(_column_values(table, matched, c), None) for c in table.columns]
        )
    header = [*table.label_columns, "ran", *(f"{c} ours (paper, Δ)" for c in table.columns)]
    return header, rows


def infer_table(runs: Sequence[Run], tables: Mapping[int, PaperTable]) -> PaperTable:
    """The paper table the runs belong to, from their ``task_name`` (``tableN``), or a clear error."""
    numbers = set()
    for run in runs:
        name = str(run.config.get("task_name", ""))
        if name.startswith("table") and name[5:].isdigit():
            numbers.add(int(name[5:]))
    if len(numbers) == 1 and next(iter(numbers)) in tables:
        return tables[numbers.pop()]
    found = sorted({str(r.config.get("task_name")) for r in runs})
    raise RunsError(f"cannot tell which paper table these runs belong to (task names {found}); pass --table N")


def _dataset_name(keypoints: Any) -> str:
    return str(keypoints.get("name", "custom")) if isinstance(keypoints, Mapping) else str(keypoints)


def dataset_scores(run: Run) -> dict[str, float]:
    """A run's test AP (percent) per dataset, by keypoint-spec name: each member of a multi-dataset run
    (``metrics.json`` ``datasets``), or the one dataset of a run trained alone."""
    members = _get(run.config, "data.datasets")
    if isinstance(members, Mapping):
        reports = run.metrics.get("datasets") or {}
        scores = {}
        for name, member in members.items():
            ap = (reports.get(name) or {}).get("AP")
            if ap is not None:
                scores[_dataset_name(_get(member, "keypoints", name))] = 100.0 * float(ap)
        return scores
    ap = _percent(run, "AP")
    return {} if ap is None else {_dataset_name(_get(run.config, "data.keypoints", "?")): ap}


def joint_layout(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Per dataset and method: the test AP of the runs trained on it alone beside that of the runs trained
    on it jointly with other datasets (``data=multi``), scored on the same dataset's own keypoints."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"alone": [], "jointly": []})
    labels: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in runs:
        jointly = isinstance(_get(run.config, "data.datasets"), Mapping)
        for dataset, ap in dataset_scores(run).items():
            key = (dataset, row_key(run.config)[0])
            cells[key]["jointly" if jointly else "alone"].append(ap)
            labels[key].add(ran(run.config))
    if not any(c["jointly"] for c in cells.values()):
        raise RunsError("no run was trained on several datasets (data=multi); give the joint run's folder too")
    rows = []
    for key, values in sorted(cells.items()):
        alone, joint = values["alone"], values["jointly"]
        delta = f"{statistics.fmean(joint) - statistics.fmean(alone):+.1f}" if alone and joint else "—"
        rows.append([*key, "; ".join(sorted(labels[key])), _cell(alone, None), _cell(joint, None), delta])
    return ["dataset", "method", "ran", "AP trained alone", "AP trained jointly", "Δ (jointly − alone)"], rows


def complexity_runs(path: Path) -> list[dict[str, Any]]:
    """The rows of ``scripts/complexity.py --json`` (Table 7's parameters and GFLOPs)."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunsError(f"cannot read the complexity report {path}: {err}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "model" in r for r in rows):
        raise RunsError(f"{path} is not a complexity report (python scripts/complexity.py --json)")
    return rows


def layout_complexity(
    table: PaperTable, report: Sequence[Mapping[str, Any]], runs: Sequence[Run] = ()
) -> tuple[list[str], list[list[str]]]:
    """Table 7: parameters and GFLOPs from the complexity report, AP from runs when given."""
    measured = {r["model"]: r for r in report}
    by_row: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_row[row_key(run.config)[0]].append(run)
    rows = []
    for row in table.rows:
        method = row.row.method if row.row is not None else ""
        model = measured.get(method)
        ours = {
            "Params(M)": [model["params_excluding_text_encoder"] / 1e6] if model else [],
            "GFLOPs": [model["gflops"]] if model else [],
            "AP": [v for v in (_percent(r, "AP") for r in by_row.get(method, [])) if v is not None],
        }
        rows.append(
            [row.printed[c] for c in table.label_columns]
            + [method if model else "—"]
            + [_cell(ours[c], row.values[c]) for c in table.columns]
        )
    return [*table.label_columns, "ran", *(f"{c} ours (paper, Δ)" for c in table.columns)], rows


def sweep_layout(runs: Sequence[Run], axis: str = "split.k") -> tuple[list[str], list[list[str]], dict]:
    """Runs varying one config value (default the shots per species ``split.k``): rows are the methods,
    columns the values, cells the test AP; also the curves ``{method: [(value, mean AP), ...]}``."""
    cells: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        value = _get(run.config, axis)
        ap = _percent(run, "AP")
        if value is not None and ap is not None:
            cells[row_key(run.config)[0]][value].append(ap)
    if not cells:
        raise RunsError(f"no run sets {axis}; pass --sweep with a config key the runs vary")
    values = sorted({v for per_value in cells.values() for v in per_value}, key=lambda v: (str(type(v)), v))
    name = axis.split(".")[-1]
    # A searched value (a trial of a hyperparameter search) is a float of many digits: four tell the trials apart.
    header = ["method", *(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}" for v in values)]
    rows = [
        [method] + [_cell(per_value.get(v, []), None) for v in values] for method, per_value in sorted(cells.items())
    ]
    curves = {m: [(v, statistics.fmean(p[v])) for v in values if p.get(v)] for m, p in cells.items()}
    return header, rows, curves


def plot_curves(curves: Mapping[str, Sequence[tuple[Any, float]]], path: Path, xlabel: str) -> Path:
    """AP against the swept value, one line per method, as a PNG (drawn with OpenCV)."""
    import cv2
    import numpy as np

    width, height, margin = 720, 480, 70
    canvas = np.full((height, width, 3), 255, np.uint8)
    xs = sorted({float(x) for points in curves.values() for x, _ in points})
    ys = [y for points in curves.values() for _, y in points]
    if not xs:
        raise RunsError("nothing to plot")
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = min(0.0, min(ys)), max(100.0 if max(ys) > 50 else max(ys) * 1.1, 1e-6)

    def to_px(x: float, y: float) -> tuple[int, int]:
        return (
            int(margin + (x - x_low) / (x_high - x_low) * (width - 2 * margin)),
            int(height - margin - (y - y_low) / (y_high - y_low) * (height - 2 * margin)),
        )

    cv2.line(canvas, to_px(x_low, y_low), to_px(x_high, y_low), (0, 0, 0), 1)
    cv2.line(canvas, to_px(x_low, y_low), to_px(x_low, y_high), (0, 0, 0), 1)
    for x in xs:
        cv2.putText(
            canvas,
            f"{x:g}",
            (to_px(x, y_low)[0] - 10, height - margin + 25),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for y in np.linspace(y_low, y_high, 5):
        cv2.putText(
            canvas, f"{y:.0f}", (10, to_px(x_low, y)[1] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
    cv2.putText(
        canvas, xlabel, (width // 2 - 40, height - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA
    )
    cv2.putText(canvas, "AP", (10, margin - 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    palette = [(213, 94, 0), (0, 114, 178), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233)]
    for i, (method, points) in enumerate(sorted(curves.items())):
        color = palette[i % len(palette)][::-1]  # RGB -> BGR
        pixels = [to_px(float(x), y) for x, y in points]
        for a, b in zip(pixels, pixels[1:]):
            cv2.line(canvas, a, b, color, 2, cv2.LINE_AA)
        for p in pixels:
            cv2.circle(canvas, p, 4, color, -1, cv2.LINE_AA)
        cv2.putText(
            canvas,
            method,
            (width - margin - 180, margin + 20 * i),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            color,
            1,
            cv2.LINE_AA,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)
    return path


def wandb_runs(project: str, group: str | None, api: Any = None) -> list[Run]:
    """Finished runs of a W&B project (``entity/project``), optionally of one group (a table)."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else {}
    runs = []
    for remote in api.runs(project, filters=filters):
        summary = dict(remote.summary)
        metrics = {name: summary[f"test/{name}"] for name in METRIC_OF_COLUMN.values() if f"test/{name}" in summary}
        if metrics:
            runs.append(Run(Path(f"wandb:{project}/{remote.id}"), dict(remote.config), metrics))
    if not runs:
        raise RunsError(
            f"W&B project {project} has no finished run with test metrics" + (f" in group {group}" if group else "")
        )
    return runs
