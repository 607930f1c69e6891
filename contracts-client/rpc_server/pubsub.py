"""Solana's WebSocket PubSub for the local node: signature, account, program, logs, slot
and root subscriptions, fed from the ledger's commit point.

Clients find it where @solana/web3.js derives it (the RPC port + 1) and on the RPC port
itself (a WebSocket upgrade on ``/``). Notifications are published after the journal
commit of a transaction, in slot order, so a client that hears of a signature can read
everything it changed.

A hostile client cannot exhaust the node: at most ``MAX_CONNECTIONS`` sockets,
``MAX_SUBSCRIPTIONS`` per socket, messages up to ``MAX_MESSAGE_BYTES`` (hypercorn
enforces it), and a bounded send queue per socket: a client that stops reading is
disconnected when its queue is full instead of buffering without end.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from dgpu.contracts_client.chain import Landed, SvmLedger
from dgpu.contracts_client.rpc_server import accounts
from dgpu.contracts_client.rpc_server import params as p
from solders.account import Account
from solders.pubkey import Pubkey
from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
MAX_SUBSCRIPTIONS = 1024
MAX_QUEUE = 1024
MAX_MESSAGE_BYTES = 64 * 1024
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY = 1008
CLOSE_TIMEOUT = 2.0
SYSTEM_PROGRAM = "11111111111111111111111111111111"


@dataclass
class Subscription:
    id: int
    kind: str  # "signature", "account", "program", "logs", "slot", "root"
    key: Any = None  # Signature, Pubkey, or the logs filter ("all" or a Pubkey)
    encoding: str = "base64"
    data_slice: tuple[int, int] | None = None
    filters: Sequence[Callable[[Account], bool]] = ()


@dataclass(eq=False)  # compared by identity: the hub keeps clients in a set
class Client:
    """One WebSocket connection: its subscriptions and its outgoing queue."""

    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    overflowed: bool = False
    scope: anyio.CancelScope | None = None

    def send(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            # the client stopped reading: drop it rather than buffer without end
            self.overflowed = True
            if self.scope is not None:
                self.scope.cancel()


def _notification(method: str, sub: int, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": {"result": result, "subscription": sub}}


_UNSUBSCRIBE = {
    "signatureUnsubscribe": "signature",
    "accountUnsubscribe": "account",
    "programUnsubscribe": "program",
    "logsUnsubscribe": "logs",
    "slotUnsubscribe": "slot",
    "rootUnsubscribe": "root",
}


class PubSub:
    """The subscription hub of one ledger; lives on the server's event loop."""

    def __init__(self, ledger: SvmLedger) -> None:
        self._ledger = ledger
        self._clients: set[Client] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        ledger.add_listener(self._on_commit)

    # -- commit side (any thread) ------------------------------------------------------

    def _on_commit(self, landed: Landed, changed: Sequence[tuple[Pubkey, Account | None]]) -> None:
        if self._loop is None or not self._clients:
            return
        # Called under the ledger's lock: publish from the loop once it is released (the
        # encoders read the ledger). Callbacks run in FIFO order: notifications stay in
        # slot order.
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(self._publish, landed, list(changed))
        else:
            self._loop.call_soon_threadsafe(self._publish, landed, list(changed))

    def _publish(self, landed: Landed, changed: Sequence[tuple[Pubkey, Account | None]]) -> None:
        context = {"slot": landed.slot}
        mentioned = set(landed.meta.get("accountKeys", ()))
        for client in list(self._clients):
            for sub in list(client.subscriptions.values()):
                if sub.kind == "signature" and sub.key == landed.signature:
                    value = {"err": landed.err_json}
                    client.send(
                        _notification(
                            "signatureNotification", sub.id, {"context": context, "value": value}
                        )
                    )
                    del client.subscriptions[sub.id]  # a signature subscription fires once
                elif sub.kind == "account":
                    for key, account in changed:
                        if key == sub.key:
                            value = self._encode(account, sub)
                            result = {"context": context, "value": value}
                            client.send(_notification("accountNotification", sub.id, result))
                elif sub.kind == "program":
                    for key, account in changed:
                        if account is None or account.owner != sub.key or account.lamports == 0:
                            continue
                        if all(f(account) for f in sub.filters):
                            value = {"pubkey": str(key), "account": self._encode(account, sub)}
                            result = {"context": context, "value": value}
                            client.send(_notification("programNotification", sub.id, result))
                elif sub.kind == "logs" and (sub.key == "all" or str(sub.key) in mentioned):
                    value = {
                        "signature": str(landed.signature),
                        "err": landed.err_json,
                        "logs": list(landed.logs),
                    }
                    result = {"context": context, "value": value}
                    client.send(_notification("logsNotification", sub.id, result))
                elif sub.kind == "slot":
                    slot = {"parent": landed.slot - 1, "root": landed.slot, "slot": landed.slot}
                    client.send(_notification("slotNotification", sub.id, slot))
                elif sub.kind == "root":
                    client.send(_notification("rootNotification", sub.id, landed.slot))

    def _encode(self, account: Account | None, sub: Subscription) -> dict[str, Any]:
        if account is None or account.lamports == 0:
            # what a validator sends for an account that was closed
            return {
                "lamports": 0,
                "data": ["", "base64"],
                "owner": SYSTEM_PROGRAM,
                "executable": False,
                "rentEpoch": 0,
                "space": 0,
            }
        try:
            read = self._ledger.get_account
            encoded = accounts.encode_account(account, sub.encoding, sub.data_slice, read)
        except p.RpcFault:  # base58 of too large an account: fall back as jsonParsed does
            encoded = accounts.encode_account(account, "base64", sub.data_slice)
        assert encoded is not None
        return encoded

    # -- requests (event loop) ---------------------------------------------------------

    def _subscribe(self, client: Client, method: str, params: list[Any]) -> int:
        if len(client.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise p.invalid(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        sub = Subscription(next(self._ids), method.removesuffix("Subscribe"))
        if sub.kind == "signature":
            p.arity(params, 1, 2)
            sub.key = p.signature(params[0], "signature")
            p.config(params, 1)
        elif sub.kind == "account":
            p.arity(params, 1, 2)
            sub.key = p.pubkey(params[0], "pubkey")
            sub.encoding, sub.data_slice = accounts.account_view(p.config(params, 1))
        elif sub.kind == "program":
            p.arity(params, 1, 2)
            sub.key = p.pubkey(params[0], "program id")
            cfg = p.config(params, 1)
            sub.encoding, sub.data_slice = accounts.account_view(cfg)
            sub.filters = accounts.parse_filters(cfg.get("filters"))
        elif sub.kind == "logs":
            p.arity(params, 1, 2)
            p.config(params, 1)
            sub.key = self._logs_filter(params[0])
        else:  # slot, root
            p.arity(params, 0, 0)
        if sub.kind == "signature":
            (landed,) = self._ledger.statuses([sub.key])
            if landed is not None:
                # Already landed: notify at once, as a validator does, right after the
                # answer carrying the subscription id (queued before this callback runs).
                result = {"context": {"slot": landed.slot}, "value": {"err": landed.err_json}}
                note = _notification("signatureNotification", sub.id, result)
                asyncio.get_running_loop().call_soon(client.send, note)
                return sub.id
        client.subscriptions[sub.id] = sub
        return sub.id

    @staticmethod
    def _logs_filter(value: Any) -> Any:
        if value in ("all", "allWithVotes"):
            return "all"
        if isinstance(value, dict) and isinstance(value.get("mentions"), list):
            mentions = value["mentions"]
            if len(mentions) != 1:
                raise p.invalid("Invalid Request: Only 1 address supported")
            return p.pubkey(mentions[0], "mentions[0]")
        raise p.invalid('logs filter must be "all", "allWithVotes" or {"mentions": [address]}')

    def handle(self, client: Client, text: str) -> dict[str, Any] | None:
        """Answer one WebSocket message (a JSON-RPC request); None for notifications."""
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):
            return {"jsonrpc": "2.0", "error": {"code": p.PARSE_ERROR, "message": "Parse error"}}
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            error = {"code": p.INVALID_REQUEST, "message": "Invalid request"}
            return {"jsonrpc": "2.0", "error": error, "id": None}
        id_ = request.get("id")
        method, params = request.get("method"), request.get("params", [])
        if params is None:
            params = []
        try:
            if not isinstance(method, str):
                raise p.RpcFault(p.INVALID_REQUEST, "Invalid request")
            if not isinstance(params, list):
                raise p.invalid("expected an array")
            if method in _UNSUBSCRIBE:
                p.arity(params, 1, 1)
                sub_id = p.u64(params[0], "subscription id")
                sub = client.subscriptions.get(sub_id)
                if sub is None or sub.kind != _UNSUBSCRIBE[method]:
                    raise p.invalid("Invalid subscription id.")
                del client.subscriptions[sub_id]
                result: Any = True
            elif method.endswith("Subscribe") and method.removesuffix("Subscribe") in (
                "signature",
                "account",
                "program",
                "logs",
                "slot",
                "root",
            ):
                result = self._subscribe(client, method, params)
            else:
                raise p.RpcFault(p.METHOD_NOT_FOUND, "Method not found")
        except p.RpcFault as fault:
            answer = {"jsonrpc": "2.0", "error": fault.to_json(), "id": id_}
            return None if "id" not in request else answer
        return None if "id" not in request else {"jsonrpc": "2.0", "result": result, "id": id_}

    async def endpoint(self, websocket: WebSocket) -> None:
        """The ASGI WebSocket endpoint: one task reads requests, one writes the queue."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        if len(self._clients) >= MAX_CONNECTIONS:
            await websocket.close(CLOSE_TRY_AGAIN_LATER)
            return
        await websocket.accept()
        client = Client()
        self._clients.add(client)
        try:
            async with anyio.create_task_group() as tasks:
                client.scope = tasks.cancel_scope
                tasks.start_soon(self._write, websocket, client)
                await self._read(websocket, client)
                tasks.cancel_scope.cancel()
        finally:
            self._clients.discard(client)
            client.subscriptions.clear()
        if client.overflowed:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await websocket.close(CLOSE_POLICY)

    async def _read(self, websocket: WebSocket, client: Client) -> None:
        while True:
            try:
                message = await websocket.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            answer = self.handle(client, text)
            if answer is not None:
                client.send(answer)

    @staticmethod
    async def _write(websocket: WebSocket, client: Client) -> None:
        while True:
            text = await client.queue.get()
            try:
                await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                # the peer went away; the reader will see the disconnect
                if client.scope is not None:
                    client.scope.cancel()
                return
