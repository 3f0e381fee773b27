#!/usr/bin/env bash
# The prepared GPU check (scripts/gpu_check.py; README "Performance"). On a machine with torch but
# without the project's other dependencies (the lent GPU machines), the wheels that `make gpu-wheels`
# put in .whl/ are installed first, into a folder outside the tree; the project itself runs from the
# tree. Usage: scripts/gpu_check.sh [--device cpu --quick] [--out DIR] [gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import hydra, open_clip, pycocotools" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "gpu_check: hydra-core, open_clip_torch or pycocotools is missing and .whl/ holds no wheels:" \
             "run \`make gpu-wheels\` on a machine with internet first, or pip install -e ." >&2
        exit 2
    fi
    site=${CLAMP_WHEEL_SITE:-/tmp/clamp-gpu-check-site}
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c "import clamp.conf" 2>/dev/null; then
    # Not installed: lay the package out as an install would (the configs ship as clamp.conf).
    package=$(mktemp -d)
    cp -r src/clamp "$package/"
    cp -r conf "$package/clamp/conf"
    export PYTHONPATH="$package${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} WANDB_MODE=${WANDB_MODE:-offline} NO_ALBUMENTATIONS_UPDATE=${NO_ALBUMENTATIONS_UPDATE:-1}
exec "$PYTHON" scripts/gpu_check.py "$@"
