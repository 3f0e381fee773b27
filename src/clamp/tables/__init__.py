"""The paper's tables as package data, and one renderer for them (``python -m clamp.tables --paper N``).

Pure Python: importing this package pulls in neither torch nor Lightning.
"""

from clamp.tables.paper import ConfigRow, PaperRow, PaperTable, PaperTableError, load_paper_tables, parse_paper_tables
from clamp.tables.render import FORMATS, render_table

__all__ = [
    "FORMATS",
    "ConfigRow",
    "PaperRow",
    "PaperTable",
    "PaperTableError",
    "load_paper_tables",
    "parse_paper_tables",
    "render_table",
]
