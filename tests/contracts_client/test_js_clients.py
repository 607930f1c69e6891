"""Outside JavaScript clients, unmodified, against ``dgpu chain serve``: @solana/web3.js 1.x
``sendAndConfirmTransaction`` (it waits on the WebSocket PubSub at the RPC port + 1) and
@solana/spl-token ``createMint``/``mintTo``/``transfer``, run by ``node`` from the folder
``scripts/js-deps.sh`` installs. What the script reports is checked against the chain."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.contracts_client.support import Node

JS_DIR = Path(__file__).parent / "js"
TIMEOUT = 120


def rpc(node: Node, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(node.url, json=body, timeout=30).json()
    assert "result" in answer, answer
    return answer["result"]


def test_web3js_and_spl_token(node: Node) -> None:
    node_bin = shutil.which("node")
    assert node_bin is not None, "node is missing: run scripts/setup.sh (scripts/js-deps.sh)"
    assert (JS_DIR / "node_modules" / "@solana" / "web3.js").is_dir(), (
        "the npm packages are missing: run scripts/js-deps.sh"
    )
    done = subprocess.run(
        [node_bin, "interop.mjs", node.url],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    # sendAndConfirmTransaction returned: the transfer is on chain
    assert rpc(node, "getBalance", seen["dest"])["value"] == 10**9
    status = rpc(node, "getSignatureStatuses", [seen["transferSig"], seen["tokenSig"]])["value"]
    assert all(s is not None and s["err"] is None for s in status)
    # spl-token: the mint, the transfer, and what the parsed reads told the script
    balance = rpc(node, "getTokenAccountBalance", seen["to"])["value"]
    assert balance["amount"] == seen["toAmount"] == "250000"
    assert seen["supply"] == seen["supplyRpc"] == "1000000" and seen["decimals"] == 6
    assert seen["byOwner"] == ["250000"]
    post = {b["owner"]: b["uiTokenAmount"]["amount"] for b in seen["parsedPostTokenBalances"]}
    assert post == {seen["payer"]: "750000", seen["dest"]: "250000"}
    assert seen["history"][0] == seen["tokenSig"] and len(seen["history"]) == 2
