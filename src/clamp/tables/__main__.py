"""Print a table of the paper as it stands there:  python -m clamp.tables --paper N [--format md|csv|latex]."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clamp.tables.paper import PaperTable, load_paper_tables
from clamp.tables.render import FORMATS, render_table


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m clamp.tables``."""
    parser = argparse.ArgumentParser(
        prog="python -m clamp.tables",
        description="Print a table of the CLAMP paper (Tables 1-11) with its caption, columns and rows as printed.",
    )
    parser.add_argument("--paper", type=int, metavar="N", help="the number of the paper table to print")
    parser.add_argument("--format", choices=FORMATS, default="md",
                        help="md (GitHub Markdown, the default), csv (no caption) or latex (booktabs)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the table to FILE instead of the console")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad command line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.paper is None:
        parser.error("nothing to print: give --paper N")
    tables = load_paper_tables()
    if args.paper not in tables:
        print(f"error: the paper has no Table {args.paper}; it has Tables {min(tables)} to {max(tables)}",
              file=sys.stderr)
        return 2
    return _emit(render_paper_table(tables[args.paper], args.format), args.out)


def render_paper_table(table: PaperTable, fmt: str) -> str:
    """One paper table in format ``fmt``, caption included where the format has room for it."""
    caption = table.title if fmt == "latex" else table.caption  # LaTeX numbers its tables itself
    return render_table(table.header, table.cells(), fmt, caption=caption)


def _emit(text: str, out: Path | None) -> int:
    if out is None:
        print(text)
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
