"""The one base class of the errors a user can fix: bad data, weights, checkpoints, configs, inputs.

Every such error names the file, field or value at fault and what to do about it. The entry points
(``python -m clamp.train`` / ``eval`` / ``predict`` / ``export``) print it as one line and exit with
status 2, without a traceback; library users catch :class:`ClampError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ClampError(Exception):
    """A problem with the user's input, reported in one line (see the module docstring)."""


class MissingFileError(ClampError, FileNotFoundError):
    """A file or folder the user named (or a config points at) does not exist."""


def close_matches(name: str, options: Iterable[str], limit: int = 3) -> list[str]:
    """The options most like ``name`` (case-insensitive), best first: the "did you mean" list."""
    options = list(options)
    by_lower = {option.lower(): option for option in options}
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.6)
    return [by_lower[hit] for hit in hits]


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """``" (did you mean X?)"`` for the closest options, or an empty string when none is close."""
    hits = close_matches(name, options)
    return f" (did you mean {' or '.join(hits)}?)" if hits else ""
