#!/usr/bin/env bash
# The README's benchmark command: installs what it needs, then runs the demo suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
if ! python -c "import skad, matplotlib" 2>/dev/null; then
    python -m pip install --quiet "torch==2.13.0"
    python -m pip install --quiet -e ".[dev]"
fi
python -m skad.benchmark "$@"
