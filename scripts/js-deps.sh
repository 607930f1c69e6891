#!/usr/bin/env bash
# Install what the JavaScript interop tests run: Node.js (Debian's, when no node is on the
# machine) and the npm packages pinned in tests/contracts_client/js/package-lock.json
# (@solana/web3.js 1.x, @solana/spl-token, @coral-xyz/anchor 0.32) into that folder's node_modules.
#
# Idempotent: does nothing when node is present and node_modules matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

JS_DIR=tests/contracts_client/js

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "js-deps: node and npm are missing; run as root to install them" >&2
        exit 1
    fi
    echo "js-deps: installing nodejs and npm (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nodejs npm
fi

# npm writes node_modules/.package-lock.json on install: same content as the lock = done
stamp="$JS_DIR/node_modules/.dgpu-lock.sha256"
want=$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "js-deps: up to date ($JS_DIR/node_modules)"
    exit 0
fi
echo "js-deps: npm ci in $JS_DIR"
(cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" >"$stamp"
echo "js-deps: done"
