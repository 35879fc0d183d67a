#!/usr/bin/env bash
# The README's benchmark command: installs what it needs (in the active
# virtual environment, or in a project-local .venv/ it creates), then runs
# the benchmark (the demo suite unless told otherwise; arguments are passed
# to `python -m skad.benchmark`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_env.sh
source scripts/_env.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
skad_env dev matplotlib
"$SKAD_PY" -m skad.benchmark "$@"
