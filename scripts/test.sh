#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up the machine, check style and types, run
# every test against real parts (Docker Engine, LiteSVM, libp2p sockets, hypercorn,
# Chromium). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
PYTHON=.venv/bin/python bash scripts/typecheck
echo "== pytest"
.venv/bin/python -m pytest "$@"
