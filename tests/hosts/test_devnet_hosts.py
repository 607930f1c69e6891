"""``dgpu devnet --hosts TOPOLOGY``: the whole devnet spread over network namespaces —
chain, coordinator and bootstrap on a public server host reached by its address, the
provider behind the topology's NAT, the demo's renter on its own host — and nothing
(namespace, link, iptables rule, process) left after it stops: at the end of ``--demo``,
on Ctrl-C, and when a part fails to start. Without root it refuses in words. Real
``dgpu`` processes, Docker, the escrow deployed on ``dgpu chain serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dgpu.cli.devnet.hosts import HostsUnavailable, check_hosts

DGPU = [sys.executable, "-m", "dgpu.cli.main"]
UP_S = 300.0


def _env(home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _devnet(tmp: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``dgpu devnet ARGS`` to its end; past ``timeout`` it gets Ctrl-C (as a user
    would), so even a failing test leaves no lab behind."""
    process = subprocess.Popen(
        [*DGPU, "devnet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(tmp / "home"),
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        failed = f"dgpu devnet {args} did not end in {timeout}s:\n{err[-4000:]}"
        raise AssertionError(failed) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _nothing_left(state: Path) -> None:
    """No namespace, root link or process of this devnet's lab remains."""
    lab = json.loads((state / "devnet.json").read_text())["lab"]
    assert lab, "the devnet recorded no lab"
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"dg{lab}-" not in namespaces, namespaces
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert f"dgT{lab}" not in links
    # every part names the state directory on its command line
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(state).encode() in cmdline:
                left.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert not left, left


def test_without_root_hosts_is_refused_in_words() -> None:
    with pytest.raises(HostsUnavailable, match=r"network namespaces need root.*as root"):
        check_hosts("network namespaces need root")


@pytest.mark.slow
def test_an_unprivileged_user_gets_a_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    state = tmp_path / "devnet"
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *DGPU,
         "devnet", "--hosts", "nat", "--demo", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60, check=False, env=_env(tmp_path / "home"),
    )  # fmt: skip
    assert done.returncode != 0
    assert "network namespaces need root" in done.stderr and "as root" in done.stderr
    assert "Traceback" not in done.stderr
    assert not state.exists(), "nothing is written before the check"


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("topology", "connection"),
    [
        ("public", "direct"),
        # through the relay first, then DCUtR punches through the home routers
        ("nat", "hole-punched"),
        ("double-nat", "hole-punched"),
        ("symmetric", "relayed"),
    ],
)
def test_demo_across_hosts_says_how_the_renter_reached_the_provider(
    tmp_path: Path, busybox_image: str, topology: str, connection: str
) -> None:
    state = tmp_path / "devnet"
    done = _devnet(
        tmp_path, "--hosts", topology, "--providers", "1", "--demo", "--json",
        "--state-dir", str(state), timeout=UP_S + 300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["connection"] == connection
    assert summary["state"] == "succeeded"
    assert summary["paid_to_provider"] > 0
    total = summary["paid_to_provider"] + summary["platform_fee"] + summary["refunded_to_renter"]
    assert total == summary["deposit"]
    assert "network lab" in done.stderr
    _nothing_left(state)


@pytest.mark.slow
@pytest.mark.docker
def test_ctrl_c_leaves_nothing(tmp_path: Path, busybox_image: str) -> None:
    state = tmp_path / "devnet"
    process = subprocess.Popen(
        [*DGPU, "devnet", "--hosts", "public", "--providers", "1", "--json",
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=(tmp_path / "devnet.err").open("w"), text=True,
        env=_env(tmp_path / "home"),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the ready object, once every part is up
        assert line.startswith("{"), (tmp_path / "devnet.err").read_text()[-4000:]
        ready = json.loads(line)
        assert ready["hosts"] == "public"
        # reached by the server host's address, never loopback
        assert "198.18." in ready["rpc_url"] and "198.18." in ready["coordinator_url"]
        assert "/ip4/198.18." in ready["bootstrap"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    _nothing_left(state)


@pytest.mark.slow
def test_a_part_that_fails_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "devnet"
    state.mkdir()
    # the provider cannot make its data directory (a file is in the way): it exits
    # before it is ready, after the lab was built and chain, coordinator and bootstrap
    # started in it
    (state / "provider-0").write_text("in the way")
    done = _devnet(
        tmp_path, "--hosts", "nat", "--providers", "1", "--executor", "local",
        "--state-dir", str(state), timeout=UP_S,
    )  # fmt: skip
    assert done.returncode != 0
    assert "provider-0 exited" in done.stderr, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    _nothing_left(state)
