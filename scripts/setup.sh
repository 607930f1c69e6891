#!/usr/bin/env bash
# Set up this machine for dgpu: Debian packages (Docker Engine, Chromium), Node.js and the
# npm packages of the JavaScript interop tests (scripts/js-deps.sh), a Docker
# Engine running, and a virtual environment in .venv with dgpu installed.
#
# Idempotent; run as root on Debian 12. DGPU_EDITABLE=1 installs in editable mode
# (for development); the default is a plain `pip install .`, as a user gets it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
bash scripts/js-deps.sh
bash scripts/start-dockerd.sh

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if [[ ${DGPU_EDITABLE:-0} == 1 ]]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
else
    .venv/bin/python -m pip install -q --disable-pip-version-check ".[dev]"
fi
.venv/bin/python -m pip check
echo "setup: done (.venv/bin/dgpu)"
