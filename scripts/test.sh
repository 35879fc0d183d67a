#!/usr/bin/env bash
# The README's test command: installs what it needs (in the active virtual
# environment, or in a project-local .venv/ it creates), then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_env.sh
source scripts/_env.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
skad_env dev pytest xdist
echo "Running the test suite (pytest -n 2; a few minutes on 2 cores) ..."
"$SKAD_PY" -m pytest -n 2 -q -p no:cacheprovider "$@"
