"""The package's shape: the library imports neither Lightning nor Hydra."""

from __future__ import annotations

from tests.helpers import run_cli


def test_importing_the_library_loads_no_lightning_or_hydra():
    code = (
        "import sys, clamp, clamp.models, clamp.checkpoint, clamp.predictor, clamp.codec, clamp.data.splits, "
        "clamp.evaluation.metric, clamp.synthetic, clamp.tables; clamp.create_model; clamp.Predictor; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'hydra', "
        "'omegaconf')))"
    )
    result = run_cli("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
