#!/usr/bin/env bash
# The README's test command: installs what it needs, then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
if ! python -c "import skad, pytest, xdist" 2>/dev/null; then
    python -m pip install --quiet "torch==2.13.0"
    python -m pip install --quiet -e ".[dev]"
fi
python -m pytest -n 2 -q -p no:cacheprovider "$@"
