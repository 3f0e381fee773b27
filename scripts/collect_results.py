"""Collect the test metrics of a multirun into one table (one row per job, like the paper's tables).

Usage::

    python -m clamp.train -m +experiment=table1            # writes multirun/table1/<date>/<job>/...
    python scripts/collect_results.py multirun/table1/<date>            # Markdown table
    python scripts/collect_results.py multirun/table1/<date> --json     # the same rows as JSON

Each job folder holds Hydra's ``.hydra/overrides.yaml`` (what the row changed) and the
``metrics.json`` that ``clamp.train`` writes after testing the best checkpoint. Jobs still running
or that failed have no metrics and are listed as missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (sorted by job number): the overrides that set it apart from the other
    jobs (its row label) and its test metrics."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no multirun folder at {sweep_dir}")
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
                  key=lambda p: int(p.name) if p.name.isdigit() else p.name)
    overrides = {job: yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [] for job in jobs}
    shared = set.intersection(*(set(o) for o in overrides.values())) if len(jobs) > 1 else set()
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"job": job.name, "row": " ".join(o for o in overrides[job] if o not in shared)}
        metrics_file = job / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            row.update({key: metrics[key] for key in METRICS})
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for row in rows:
        values = [f"{100 * row[key]:.1f}" if key in row else "missing" for key in METRICS]
        lines.append(f"| {row['row'] or row['job']} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Collect a multirun's test metrics into one table.")
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder, e.g. multirun/table1/<date>")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a Markdown table")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.sweep_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.sweep_dir} holds no Hydra job folders", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
