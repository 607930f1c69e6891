#!/usr/bin/env bash
# Install the Debian packages the test suite needs (Debian 12, run as root).
#
# Idempotent: packages already installed are skipped, and `apt-get update` only runs
# when something is missing. Safe to run on every CI start.
#
#   docker.io        Docker Engine (dockerd) for the executor tests
#   busybox-static   the one binary of the local test image dgpu/busybox:latest
#   chromium(-driver) headless browser for the explorer tests
#   libgmp-dev       fastecdsa (a libp2p dependency) compiles against it
#   prometheus       promtool, which checks the alert rules in ops/ (the server is not started)
#   postgresql       the coordinator's shared store: the tests start throwaway clusters with
#                    initdb/pg_ctl (/usr/lib/postgresql/15/bin); no system service is used
#   iproute2, iptables  the network lab of hosts and NAT routers (tests/hosts)
set -euo pipefail

PACKAGES=(docker.io busybox-static chromium chromium-driver libgmp-dev prometheus postgresql iproute2 iptables)

if [[ $(id -u) -ne 0 ]]; then
    echo "system-deps: must run as root" >&2
    exit 1
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system-deps: all present (${PACKAGES[*]})"
    exit 0
fi

echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

for pkg in "${missing[@]}"; do
    if ! installed "$pkg"; then
        echo "system-deps: $pkg did not install" >&2
        exit 1
    fi
done
echo "system-deps: done"
