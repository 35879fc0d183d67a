# Shared by scripts/benchmark.sh, scripts/test.sh and .ci/run (sourced, not run).
#
# skad_env EXTRAS MODULES...
#   Chooses the Python environment and makes sure skad is installed in it:
#   - an active virtual environment (or conda environment) is used as it is;
#   - otherwise a project-local one, .venv/, is created on first use (with
#     the system's python3) and reused afterwards, so nothing is installed
#     into the system Python (which pip refuses on "externally managed"
#     systems such as Debian and Ubuntu).
#   When `import skad torch MODULES...` fails, it installs the CPU build of
#   torch==2.13.0 first (a bare "torch" requirement would pull a multi-GB CUDA
#   build), then skad in editable mode with EXTRAS, saying what it installs.
#   Sets SKAD_PY to the environment's python.

skad_env() {
    local extras="$1"
    shift
    local modules="skad, torch"
    local m
    for m in "$@"; do modules="$modules, $m"; done
    if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
        SKAD_PY="$(command -v python || command -v python3)"
        echo "Using the active Python environment: $SKAD_PY"
    else
        if [ ! -x .venv/bin/python ]; then
            local sys_py
            sys_py="$(command -v python3 || command -v python || true)"
            if [ -z "$sys_py" ]; then
                echo "error: no python3 found; install Python 3.10 or newer first." >&2
                return 1
            fi
            echo "Creating a project-local virtual environment in .venv/ (with $sys_py) ..."
            if ! "$sys_py" -m venv .venv; then
                echo "error: '$sys_py -m venv .venv' failed; install the venv module" \
                     "(Debian/Ubuntu: apt install python3-venv) or activate an" \
                     "environment of your own, then run this command again." >&2
                return 1
            fi
        fi
        SKAD_PY="$PWD/.venv/bin/python"
        echo "Using the project-local environment .venv/ ($SKAD_PY)"
    fi
    export SKAD_PY
    if "$SKAD_PY" -c "import $modules" 2>/dev/null; then
        return 0
    fi
    local start=$SECONDS
    echo "Installing into that environment (first run only; about 1 to 5 minutes):"
    echo "  - pip (upgrade)"
    echo "  - torch==2.13.0, the CPU build (~200 MB)"
    echo "  - skad in editable mode with extras [$extras] and its dependencies"
    echo "    (scikit-learn, numpy, scipy, joblib, tqdm, safetensors, ...)"
    "$SKAD_PY" -m pip install --quiet --upgrade pip
    "$SKAD_PY" -m pip install --quiet --progress-bar on "torch==2.13.0"
    "$SKAD_PY" -m pip install --quiet -e ".[$extras]"
    echo "Installed in $((SECONDS - start)) s."
}
