"""The project's Hydra sweeper: hydra-optuna-sweeper's, continuing a stopped search (:mod:`clamp.search`).

Hydra takes sweepers only from its ``hydra_plugins`` namespace and imports every plugin there when a command
starts, so this module stays light: without the ``optuna`` extra it defines nothing (no warning on every
command), and Optuna itself is imported only when a search runs. Hydra's plugin scan does not see into an
editable install, so the sweeper also registers itself; ``clamp.cli`` imports this module for a search.
"""

import logging
from importlib.util import find_spec
from typing import Any

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

if find_spec("hydra_plugins.hydra_optuna_sweeper") is not None:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

    class ContinuableOptunaSweeper(OptunaSweeper):
        """``OptunaSweeper`` whose study lives in the sweep folder and continues where a stopped search ended."""

        def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
            from clamp.search import prepare_storage

            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
            prepare_storage(self.sweeper)

        def sweep(self, arguments: list[str]) -> Any:
            from clamp.search import sweep

            sweep(self.sweeper, arguments)

    Plugins.instance().register(ContinuableOptunaSweeper)
    # Optuna's database storage imports Alembic, which logs a line per plugin of its own at INFO; Hydra
    # imports Optuna (for the sampler) before any of the sweeper's code runs.
    logging.getLogger("alembic").setLevel(logging.WARNING)
