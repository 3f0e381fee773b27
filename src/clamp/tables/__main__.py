"""Paper tables, and our runs laid out as them.

python -m clamp.tables --paper N [--format md|csv|latex]       # table N as printed in the paper
python -m clamp.tables DIR [DIR ...] [--table N]               # runs / multiruns beside table N
python -m clamp.tables --complexity complexity.json [DIR ...]  # Table 7 (scripts/complexity.py --json)
python -m clamp.tables DIR [DIR ...] --sweep split.k [--plot curve.png]   # a shot sweep: AP against k
python -m clamp.tables DIR [DIR ...] --joint                   # per dataset: trained alone vs jointly (data=multi)
python -m clamp.tables --wandb ENTITY/PROJECT --group table2   # the runs of a W&B group instead of folders
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clamp.tables.paper import PaperTable, load_paper_tables
from clamp.tables.render import FORMATS, render_table
from clamp.tables.runs import (
    RunsError,
    complexity_runs,
    find_runs,
    infer_table,
    joint_layout,
    layout,
    layout_complexity,
    plot_curves,
    sweep_layout,
    wandb_runs,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m clamp.tables``."""
    parser = argparse.ArgumentParser(
        prog="python -m clamp.tables",
        description="Print a table of the CLAMP paper (Tables 1-11) as printed, or our runs beside it.",
    )
    parser.add_argument("runs", nargs="*", type=Path, metavar="DIR", help="run or multirun folders to lay out")
    parser.add_argument("--paper", type=int, metavar="N", help="the number of the paper table to print")
    parser.add_argument(
        "--table",
        type=int,
        metavar="N",
        help="the paper table to lay the runs out as (default: from the runs' task name, e.g. table2)",
    )
    parser.add_argument(
        "--complexity",
        type=Path,
        metavar="FILE",
        help="Table 7 from this report of `python scripts/complexity.py --json`",
    )
    parser.add_argument(
        "--sweep", metavar="KEY", help="lay the runs out along this config key instead (e.g. split.k for a shot sweep)"
    )
    parser.add_argument(
        "--joint",
        action="store_true",
        help="per dataset: AP of the runs trained on it alone beside the runs trained jointly (data=multi)",
    )
    parser.add_argument("--plot", type=Path, metavar="PNG", help="with --sweep: also draw AP against the key")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from a W&B project (online)")
    parser.add_argument("--group", help="with --wandb: only the runs of this group (a table's task name)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="md",
        help="md (GitHub Markdown, the default), csv (no caption) or latex (booktabs)",
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the table to FILE instead of the console")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad command line or unreadable runs)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tables = load_paper_tables()
    try:
        if args.paper is not None:
            return _emit(render_paper_table(_table(tables, args.paper), args.format), args.out)
        if args.complexity is not None:
            runs = find_runs(args.runs) if args.runs else []
            header, rows = layout_complexity(tables[7], complexity_runs(args.complexity), runs)
            return _emit(render_table(header, rows, args.format, caption=_caption(tables[7], args.format)), args.out)
        if not args.runs and not args.wandb:
            parser.error("nothing to print: give --paper N, run folders, --complexity FILE or --wandb PROJECT")
        runs = wandb_runs(args.wandb, args.group) if args.wandb else find_runs(args.runs)
        if args.joint:
            header, rows = joint_layout(runs)
            caption = "Test AP (%) per dataset, each on its own keypoints: trained alone vs trained jointly"
            return _emit(render_table(header, rows, args.format, caption=caption), args.out)
        if args.sweep:
            header, rows, curves = sweep_layout(runs, args.sweep)
            if args.plot:
                print(f"Wrote {plot_curves(curves, args.plot, args.sweep)}")
            return _emit(render_table(header, rows, args.format, caption=f"AP against {args.sweep}"), args.out)
        table = _table(tables, args.table) if args.table is not None else infer_table(runs, tables)
        header, rows = layout(table, runs)
        return _emit(render_table(header, rows, args.format, caption=_caption(table, args.format)), args.out)
    except RunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _table(tables: dict[int, PaperTable], number: int) -> PaperTable:
    if number not in tables:
        raise RunsError(f"the paper has no Table {number}; it has Tables {min(tables)} to {max(tables)}")
    return tables[number]


def _caption(table: PaperTable, fmt: str) -> str:
    return table.title if fmt == "latex" else table.caption


def render_paper_table(table: PaperTable, fmt: str) -> str:
    """One paper table in format ``fmt``, caption included where the format has room for it."""
    return render_table(table.header, table.cells(), fmt, caption=_caption(table, fmt))


def _emit(text: str, out: Path | None) -> int:
    if out is None:
        try:
            print(text)
        except BrokenPipeError:  # piped into head and the like: the reader has what it wanted
            sys.stderr.close()
        return 0
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as error:
        print(f"error: cannot write {out}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
