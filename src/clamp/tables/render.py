"""Render a table of string cells as GitHub Markdown, CSV or a booktabs LaTeX tabular.

Generic on purpose: the same renderer prints the paper's tables and, later, tables of our runs
beside the paper (cells such as ``72.1 (72.9, −0.8)``). Each format escapes what it needs.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence

FORMATS = ("md", "csv", "latex")

# A column whose filled cells all start with a number is right-aligned (md and latex).
_NUMERIC = re.compile(r"^[−+-]?\d")
_MARKDOWN_SPECIAL = re.compile(r"([\\|*_`])")
_LATEX_SPECIAL = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "✓": r"\checkmark{}",
        "✕": r"$\times$",
        "−": r"$-$",  # \checkmark needs amssymb
    }
)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, caption: str | None = None) -> str:
    """The table in format ``fmt`` (one of FORMATS), without a trailing newline.

    ``caption`` goes below the table in Markdown and into ``\\caption`` of a ``table`` float in
    LaTeX; CSV has no place for it and leaves it out.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    for index, row in enumerate(rows, start=1):
        if len(row) != len(columns):
            raise ValueError(f"row {index} has {len(row)} cells for {len(columns)} columns")
    if fmt == "csv":
        return _csv(columns, rows)
    numeric = [
        bool(filled) and all(_NUMERIC.match(cell) for cell in filled)
        for filled in ([cell for cell in column if cell] for column in zip(*rows, strict=True))
    ]
    numeric = numeric or [False] * len(columns)  # no rows: nothing to align by
    if fmt == "md":
        return _markdown(columns, rows, numeric, caption)
    return _latex(columns, rows, numeric, caption)


def _csv(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quotes cells holding commas, quotes or newlines
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: list[bool], caption: str | None) -> str:
    header, body = [_markdown_cell(c) for c in columns], [[_markdown_cell(c) for c in row] for row in rows]
    # Padded to equal widths so that the raw text reads as a table on a console too.
    widths = [max(3, *(len(line[i]) for line in [header, *body])) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if right else "-" * (w + 2) for w, right in zip(widths, numeric, strict=True))
        + "|"
    )
    lines = [line(header), rule, *(line(cells) for cells in body)]
    if caption:
        lines += ["", _markdown_cell(caption)]
    return "\n".join(lines)


def _markdown_cell(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _latex(columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: list[bool], caption: str | None) -> str:
    spec = "".join("r" if right else "l" for right in numeric)
    lines = [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        _latex_row(columns),
        r"\midrule",
        *(_latex_row(row) for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if caption:
        lines = [r"\begin{table}[t]", r"\centering", *lines, rf"\caption{{{_latex_cell(caption)}}}", r"\end{table}"]
    return "\n".join(lines)


def _latex_row(cells: Sequence[str]) -> str:
    return " & ".join(_latex_cell(cell) for cell in cells) + r" \\"


def _latex_cell(text: str) -> str:
    escaped = " ".join(text.split()).translate(_LATEX_SPECIAL)
    # A leading "[" would be read as the optional argument of the preceding \\ or \toprule.
    return "{[}" + escaped[1:] if escaped.startswith("[") else escaped
