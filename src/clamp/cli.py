"""What the Hydra entry points share: where the configs are, and how user errors are reported."""

from __future__ import annotations

import importlib.resources
import logging
import sys
from typing import Any, Callable

# The configs live in the repository's conf/ and are installed as the package `clamp.conf`;
# an absolute path works the same from an editable and a regular install.
CONFIG_PATH = str(importlib.resources.files("clamp.conf"))


class UserInputError(FileNotFoundError):
    """An input named on the command line (images, boxes) is missing or unreadable."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's data, weights or config: reported in one line, no traceback."""
    from omegaconf.errors import MissingMandatoryValue

    from clamp.data.coco import AnnotationError
    from clamp.data.splits import SplitError
    from clamp.lightning.datamodule import MissingDataError
    from clamp.lightning.module import MissingCheckpointError
    from clamp.models.clip_backbone import PretrainedWeightsError

    return (MissingDataError, MissingCheckpointError, AnnotationError, SplitError, PretrainedWeightsError,
            UserInputError, MissingMandatoryValue)


def run_entry_point(task: Callable[..., Any], *args: Any) -> Any:
    """Run ``task``; exit with status 2 and a clear message (no traceback) on a user error."""
    errors = user_error_types()
    # Importing Lightning (above) gave its logger a stderr handler of its own; Hydra's handlers
    # already print and keep the run's log file, so drop it to print each message once.
    logging.getLogger("lightning").handlers.clear()
    try:
        return task(*args)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
