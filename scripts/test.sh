#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up the machine, run every test against real
# parts (Docker Engine, LiteSVM, libp2p sockets, hypercorn, Chromium), then check style,
# the layer contracts and types. Fails if any of them fails. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1
failed=()
echo "== pytest"
.venv/bin/python -m pytest "$@" || failed+=(pytest)
echo "== ruff"
{ .venv/bin/ruff check . && .venv/bin/ruff format --check .; } || failed+=(ruff)
echo "== import-linter (layers)"
.venv/bin/lint-imports --config pyproject.toml || failed+=(import-linter)
echo "== mypy (strict)"
PYTHON=.venv/bin/python bash scripts/typecheck || failed+=(mypy)
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed"
