#!/usr/bin/env bash
# Start a Docker Engine for the tests (if none answers) and build the local test image.
#
# Idempotent: does nothing when /var/run/docker.sock answers and the image exists.
# No image registry is reachable here, so the test image `dgpu/busybox:latest` is made by
# `docker import` of a rootfs holding the static busybox and its applet symlinks.
#
# Environment:
#   DGPU_DOCKERD_LOG       dockerd's log file      (default /var/log/dgpu-dockerd.log)
#   DGPU_DOCKERD_WAIT      seconds to wait for it  (default 60)
#   DGPU_TEST_IMAGE        image name              (default dgpu/busybox:latest)
set -euo pipefail

LOG=${DGPU_DOCKERD_LOG:-/var/log/dgpu-dockerd.log}
WAIT=${DGPU_DOCKERD_WAIT:-60}
IMAGE=${DGPU_TEST_IMAGE:-dgpu/busybox:latest}
BUSYBOX=/bin/busybox

answers() {
    timeout 10 docker info >/dev/null 2>&1
}

if answers; then
    echo "start-dockerd: engine already answers"
else
    if ! command -v dockerd >/dev/null; then
        echo "start-dockerd: dockerd not installed (run scripts/system-deps.sh)" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$LOG")"
    echo "start-dockerd: starting dockerd (log: $LOG)"
    # setsid: the daemon outlives this script and the shell that ran it.
    setsid dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
        >>"$LOG" 2>&1 </dev/null &
    pid=$!
    deadline=$((SECONDS + WAIT))
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "start-dockerd: dockerd exited; last lines of $LOG:" >&2
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "start-dockerd: no answer from dockerd after ${WAIT}s; last lines of $LOG:" >&2
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "start-dockerd: engine answers (pid $pid)"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "start-dockerd: image $IMAGE present"
    exit 0
fi

if [[ ! -x $BUSYBOX ]]; then
    echo "start-dockerd: $BUSYBOX missing (run scripts/system-deps.sh)" >&2
    exit 1
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,tmp,out,work,etc,root}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
    >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    --change 'LABEL dgpu.test-image=1' \
    - "$IMAGE" >/dev/null
echo "start-dockerd: built $IMAGE ($("$BUSYBOX" --list | wc -l) applets)"
